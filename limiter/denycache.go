package limiter

import (
	"sync"
	"time"
)

// denyCache remembers recent denials from the shared store (see Limiter). It is
// safe for concurrent use.
type denyCache struct {
	size int

	mu      sync.Mutex // protects entries
	entries map[denyKey]denial
}

type denyKey struct {
	key string
	lim Limit // normalized
}

// denial says: cost tokens are not there before untilUS, and the bucket is
// not full before fullUS (local clock, microseconds).
type denial struct {
	cost    int64
	untilUS int64
	fullUS  int64
	paused  bool // the store refused for an upstream pause
}

func newDenyCache(size int) *denyCache {
	return &denyCache{size: size, entries: make(map[denyKey]denial)}
}

// lookup answers req at now from a remembered denial, if one applies.
func (c *denyCache) lookup(req Request, now time.Time) (Result, bool) {
	k := denyKey{req.Key, req.Limit.Normalized()}
	nowUS := now.UnixMicro()
	c.mu.Lock()
	d, ok := c.entries[k]
	if ok && nowUS >= d.untilUS {
		delete(c.entries, k)
		ok = false
	}
	c.mu.Unlock()
	if !ok || req.Cost < d.cost {
		return Result{}, false
	}
	retryUS := d.untilUS - nowUS
	if retryUS <= int64(req.MaxWait/time.Microsecond) {
		return Result{}, false // the store may reserve it
	}
	p := req.Limit.params()
	res := Result{
		RetryAfter: time.Duration(retryUS) * time.Microsecond,
		ResetAfter: max(time.Duration(d.fullUS-nowUS)*time.Microsecond, 0),
		Paused:     d.paused,
	}
	// The bucket lacks (fullUS-now) microseconds of refill, m units each.
	if r := (p.b*p.w - (d.fullUS-nowUS)*p.m) / p.w; r > 0 {
		res.Remaining = min(r, req.Cost-1)
	}
	return res, true
}

// remember records that the store denied req, sent at sent, with res.
func (c *denyCache) remember(req Request, sent time.Time, res Result) {
	if res.Allowed || res.RetryAfter <= 0 {
		return
	}
	k := denyKey{req.Key, req.Limit.Normalized()}
	sentUS := sent.UnixMicro()
	d := denial{
		cost:    req.Cost,
		untilUS: sentUS + int64(res.RetryAfter/time.Microsecond),
		fullUS:  sentUS + int64(res.ResetAfter/time.Microsecond),
		paused:  res.Paused,
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.size {
		c.evictLocked(sentUS)
	}
	c.entries[k] = d
}

// evictLocked makes room for at least one entry: it drops the expired
// entries and, if that freed less than an eighth of the cache, arbitrary ones
// down to seven eighths, so that a full cache costs O(1) per insert amortised.
func (c *denyCache) evictLocked(nowUS int64) {
	for k, d := range c.entries {
		if nowUS >= d.untilUS {
			delete(c.entries, k)
		}
	}
	keep := c.size - max(c.size/8, 1)
	for k := range c.entries {
		if len(c.entries) <= keep {
			return
		}
		delete(c.entries, k)
	}
}

// forget drops the denial remembered for req's key and limit, if any.
func (c *denyCache) forget(req Request) {
	k := denyKey{req.Key, req.Limit.Normalized()}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, k)
}

// len returns the number of entries, for tests.
func (c *denyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
