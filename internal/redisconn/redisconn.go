// Package redisconn turns a --redis-url into a redis.UniversalClient whose
// calls fail fast when Redis is unreachable.
//
// Three URL forms are accepted, following go-redis:
//
//	redis://[user:pass@]host:port[/db]                       one node
//	redis://h1:p1?addr=h2:p2&addr=h3:p3                      Redis Cluster (seed nodes)
//	redis://s1:p1?master_name=NAME&addr=s2:p2&addr=s3:p3     Sentinel (sentinel nodes)
//
// rediss:// enables TLS in each form. A single seed node can be marked as a
// cluster with the query parameter cluster=true.
package redisconn

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/internal/defaults"
)

// Timeouts bound every Redis call so that a dead or slow Redis makes calls
// fail in a fraction of a second instead of hanging. The zero value means
// DefaultTimeouts.
//
// A dead Redis (connection refused, or a host that does not answer within
// Dial) fails a call within Dial; a hung one within Read. Read is longer
// than Dial because a live but busy Redis, or a starved replica, must not
// be mistaken for a dead one: that would turn exact answers into degraded
// ones.
type Timeouts struct {
	// Dial bounds establishing one connection (default 100ms).
	Dial time.Duration
	// Read bounds reading one reply (default 200ms).
	Read time.Duration
	// Write bounds writing one command (default 200ms).
	Write time.Duration
	// Pool bounds waiting for a free connection (default 200ms).
	Pool time.Duration
}

// DefaultTimeouts are the timeouts used when a field of Timeouts is zero.
var DefaultTimeouts = Timeouts{
	Dial:  100 * time.Millisecond,
	Read:  200 * time.Millisecond,
	Write: 200 * time.Millisecond,
	Pool:  200 * time.Millisecond,
}

func (t Timeouts) withDefaults() Timeouts {
	t.Dial = defaults.Positive(t.Dial, DefaultTimeouts.Dial)
	t.Read = defaults.Positive(t.Read, DefaultTimeouts.Read)
	t.Write = defaults.Positive(t.Write, DefaultTimeouts.Write)
	t.Pool = defaults.Positive(t.Pool, DefaultTimeouts.Pool)
	return t
}

// ClusterStateReload is how often a Cluster client refreshes its slot map, and
// so about how long after a failover it keeps calling the dead master.
const ClusterStateReload = time.Second

// Protocol is the RESP version every client speaks: 2. The stores need
// nothing of RESP3 (their scripts answer integers, strings and arrays, and
// pub/sub has a connection of its own either way), and go-redis looks for
// RESP3 push notifications after every reply it reads: about 4 % of the
// server's CPU on an allowed Acquire (docs/benchmarks.md).
const Protocol = 2

// Kind names the Redis deployment a URL points at.
type Kind string

// The deployments Open understands.
const (
	Single   Kind = "single"
	Cluster  Kind = "cluster"
	Sentinel Kind = "sentinel"
)

// Open parses rawURL and returns a client for it. The caller owns the client
// and must Close it. Open does not contact Redis.
func Open(rawURL string, t Timeouts) (redis.UniversalClient, Kind, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, "", errors.New("redisconn: empty URL")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", fmt.Errorf("redisconn: cannot parse URL: %s", Redact(err.Error()))
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, "", fmt.Errorf("redisconn: URL scheme %q: want redis:// or rediss://", u.Scheme)
	}
	q := u.Query()
	t = t.withDefaults()
	switch {
	case q.Has("master_name"):
		opt, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, "", fmt.Errorf("redisconn: sentinel URL: %w", err)
		}
		failFast{&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout, &opt.DialerRetryTimeout, &opt.MaxRetries, &opt.DialerRetries, &opt.Protocol, &opt.ContextTimeoutEnabled}.set(t, -1)
		return redis.NewFailoverClient(opt), Sentinel, nil
	case q.Has("addr") || q.Get("cluster") == "true":
		if q.Has("cluster") {
			q.Del("cluster")
			u.RawQuery = q.Encode()
			rawURL = u.String()
		}
		opt, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, "", fmt.Errorf("redisconn: cluster URL: %w", err)
		}
		// Cluster redirections (MOVED/ASK) during a failover need a few
		// attempts (MaxRetries 2); each is bounded by the timeouts.
		failFast{&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout, &opt.DialerRetryTimeout, &opt.MaxRetries, &opt.DialerRetries, &opt.Protocol, &opt.ContextTimeoutEnabled}.set(t, 2)
		opt.MaxRedirects = 3
		// go-redis refreshes its slot map on MOVED/ASK replies only, and
		// otherwise every 60s: after a master dies (no reply at all) it
		// would keep sending that master's slots to the dead address for
		// up to a minute. Refresh it every second instead (one CLUSTER
		// SLOTS, in the background, and only while there is traffic).
		opt.ClusterStateReloadInterval = ClusterStateReload
		return redis.NewClusterClient(opt), Cluster, nil
	default:
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, "", fmt.Errorf("redisconn: %w", err)
		}
		failFast{&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.PoolTimeout, &opt.DialerRetryTimeout, &opt.MaxRetries, &opt.DialerRetries, &opt.Protocol, &opt.ContextTimeoutEnabled}.set(t, -1)
		return redis.NewClient(opt), Single, nil
	}
}

// failFast points at the fields that Open sets alike in the options of
// every kind of client (redis.Options, redis.ClusterOptions,
// redis.FailoverOptions), so that they are set in one place.
type failFast struct {
	dial, read, write, pool, dialerRetryTimeout *time.Duration
	maxRetries, dialerRetries, protocol         *int
	contextTimeout                              *bool
}

// set gives the client the timeouts t, maxRetries retries of a failed
// command (-1: none), one retry of a failed dial 10ms later, calls bounded
// by their context's deadline as well, and RESP Protocol.
func (f failFast) set(t Timeouts, maxRetries int) {
	*f.dial, *f.read, *f.write, *f.pool = t.Dial, t.Read, t.Write, t.Pool
	*f.maxRetries = maxRetries
	*f.dialerRetries = 1
	*f.dialerRetryTimeout = 10 * time.Millisecond
	*f.contextTimeout = true
	*f.protocol = Protocol
}

// passwordInURL matches the password of a redis:// or rediss:// URL's user
// info, and a password= query parameter.
var passwordInURL = regexp.MustCompile(`((?:rediss?)://[^:@/\s]*:)[^@/\s]*@|((?:[?&]|\b)(?:sentinel_)?password=)[^&\s]*`)

// Redact returns s with every Redis URL password in it replaced by
// "REDACTED": for log lines, error messages and /debug/pprof/cmdline, which
// must never show a credential. It is safe for concurrent use.
func Redact(s string) string {
	return passwordInURL.ReplaceAllStringFunc(s, func(m string) string {
		sub := passwordInURL.FindStringSubmatch(m)
		if sub[1] != "" {
			return sub[1] + "REDACTED@"
		}
		return sub[2] + "REDACTED"
	})
}
