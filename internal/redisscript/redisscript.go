package redisscript

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Script is a Lua script with its SHA1. Create one with [New] at package
// level; the zero value is not usable. A Script is immutable and safe for
// concurrent use.
type Script struct {
	script *redis.Script
	src    string
	sha    string
}

// New returns the Script of src.
func New(src string) *Script {
	s := redis.NewScript(src)
	return &Script{script: s, src: src, sha: s.Hash()}
}

// Hash returns the script's SHA1, as EVALSHA takes it.
func (s *Script) Hash() string { return s.sha }

// Source returns the script's source, as EVAL takes it.
func (s *Script) Source() string { return s.src }

// Run runs the script once on c: EVALSHA, and EVAL when Redis answers
// NOSCRIPT (go-redis's Script.Run).
func (s *Script) Run(ctx context.Context, c redis.Scripter, keys []string, args ...any) *redis.Cmd {
	return s.script.Run(ctx, c, keys, args...)
}

// Load loads the script into Redis (SCRIPT LOAD; on a Cluster client, into
// every master).
func (s *Script) Load(ctx context.Context, c redis.Scripter) *redis.StringCmd {
	return s.script.Load(ctx, c)
}

// Cmd returns an EVALSHA command of the script over keys and args, for
// [Script.Exec]. Callers that reuse their argument slices may build the
// command themselves with [NewCmd] instead.
func (s *Script) Cmd(ctx context.Context, keys []string, args ...any) *redis.Cmd {
	argv := make([]any, 0, 3+len(keys)+len(args))
	argv = append(argv, "evalsha", s.sha, len(keys))
	for _, k := range keys {
		argv = append(argv, k)
	}
	return NewCmd(ctx, append(argv, args...)...)
}

// NewCmd returns the command of argv, an EVALSHA or EVAL command line
// ("evalsha", sha, numkeys, keys..., args...), with its first key at
// position 3 so that a Cluster client routes it by its key.
func NewCmd(ctx context.Context, argv ...any) *redis.Cmd {
	c := redis.NewCmd(ctx, argv...)
	c.SetFirstKeyPos(3)
	return c
}

// Pipeliner is what Exec needs of a client: *redis.Client,
// *redis.ClusterClient, *redis.Ring and every redis.UniversalClient have it.
// On a Cluster client the pipeline is split per node by go-redis.
type Pipeliner interface {
	Pipeline() redis.Pipeliner
}

// Exec sends cmds, EVALSHA commands of the script (see [Script.Cmd] and
// [NewCmd]), as one pipeline of p. The commands that Redis answers NOSCRIPT
// are recovered: the script is loaded with loader (SCRIPT LOAD) and they are
// sent again once, as EVAL, in a second pipeline, replacing their original in
// cmds. If the load fails, each of them fails with an error that says so.
//
// On return every cmds[i] holds its reply or its error: a command that got no
// reply (the connection failed) holds the pipeline's error, so that a missing
// reply is never read as a malformed one. Exec itself returns nothing: read
// each command.
func (s *Script) Exec(ctx context.Context, p Pipeliner, loader redis.Scripter, cmds []*redis.Cmd) {
	var retry []int
	for _, i := range s.exec(ctx, p, cmds, nil) {
		if IsNoScript(cmds[i].Err()) {
			retry = append(retry, i)
		}
	}
	if len(retry) == 0 {
		return
	}
	if err := s.Load(ctx, loader).Err(); err != nil {
		err = fmt.Errorf("cannot load script after NOSCRIPT: %w", err)
		for _, i := range retry {
			cmds[i].SetErr(err)
		}
		return
	}
	for _, i := range retry {
		argv := append([]any(nil), cmds[i].Args()...)
		argv[0], argv[1] = "eval", s.src
		cmds[i] = NewCmd(ctx, argv...)
	}
	s.exec(ctx, p, cmds, retry)
}

// exec sends cmds[i] for each i of only (every command when only is nil) in
// one pipeline, gives each command without a reply the pipeline's error, and
// returns the indexes of the commands that failed.
func (s *Script) exec(ctx context.Context, p Pipeliner, cmds []*redis.Cmd, only []int) []int {
	pipe := p.Pipeline()
	each := func(fn func(i int)) {
		if only == nil {
			for i := range cmds {
				fn(i)
			}
			return
		}
		for _, i := range only {
			fn(i)
		}
	}
	each(func(i int) { _ = pipe.Process(ctx, cmds[i]) })
	_, execErr := pipe.Exec(ctx)
	var failed []int
	each(func(i int) {
		c := cmds[i]
		if c.Err() == nil && c.Val() == nil && execErr != nil {
			c.SetErr(execErr) // never read a missing reply as a malformed one
		}
		if c.Err() != nil {
			failed = append(failed, i)
		}
	})
	return failed
}

// IsNoScript reports whether err is Redis's NOSCRIPT reply ("NOSCRIPT No
// matching script"), raw or normalised by go-redis to redis.ErrNoScript,
// wrapped or not.
func IsNoScript(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, redis.ErrNoScript) {
		return true
	}
	var re redis.Error
	return errors.As(err, &re) && redis.HasErrorPrefix(re, "NOSCRIPT")
}
