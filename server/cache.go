package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/cache"
	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

// cacheServer implements CacheService.
type cacheServer struct {
	resiliencev1.UnimplementedCacheServiceServer
	srv *Server
	b   *Backends
}

// maxDeleteKeys bounds one Delete call.
const maxDeleteKeys = 1000

// logDegraded records a store failure behind a degraded answer at debug
// level: with Redis down every call would otherwise log a line.
func (c *cacheServer) logDegraded(ctx context.Context, op string, err error) {
	if err != nil {
		c.srv.log.DebugContext(ctx, "cache answered degraded", "op", op, "error", err.Error())
	}
}

func (c *cacheServer) Get(ctx context.Context, req *resiliencev1.GetRequest) (*resiliencev1.GetResponse, error) {
	if err := checkName("key", req.GetKey(), true); err != nil {
		return nil, err
	}
	res, err := c.b.Cache.Get(ctx, req.GetKey())
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	c.logDegraded(ctx, "get", res.Err)
	c.b.metrics.observeCache("get", cacheResult(res.Degraded, res.Found, "hit", "miss"))
	resp := &resiliencev1.GetResponse{Found: res.Found, Value: res.Value, Degraded: res.Degraded}
	if res.Found && res.TTL > 0 {
		resp.Ttl = durationpb.New(res.TTL)
	}
	return resp, nil
}

func (c *cacheServer) Set(ctx context.Context, req *resiliencev1.SetRequest) (*resiliencev1.SetResponse, error) {
	if err := checkName("key", req.GetKey(), true); err != nil {
		return nil, err
	}
	ttl, err := duration("ttl", req.GetTtl())
	if err != nil {
		return nil, err
	}
	res, err := c.b.Cache.Set(ctx, req.GetKey(), req.GetValue(), ttl)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	c.logDegraded(ctx, "set", res.Err)
	c.b.metrics.observeCache("set", cacheResult(res.Degraded, res.Stored, "stored", "not_stored"))
	return &resiliencev1.SetResponse{Stored: res.Stored, Degraded: res.Degraded}, nil
}

func (c *cacheServer) Delete(ctx context.Context, req *resiliencev1.DeleteRequest) (*resiliencev1.DeleteResponse, error) {
	if err := checkKeys(req.GetKeys()); err != nil {
		return nil, err
	}
	res, err := c.b.Cache.Delete(ctx, req.GetKeys()...)
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	c.logDegraded(ctx, "delete", res.Err)
	c.b.metrics.observeCache("delete", cacheResult(res.Degraded, true, "ok", ""))
	return &resiliencev1.DeleteResponse{Deleted: res.Deleted, Degraded: res.Degraded}, nil
}

// patternTimeout bounds a DeletePattern or GetStats call that comes without
// a deadline: both walk the key space.
const patternTimeout = 30 * time.Second

func (c *cacheServer) DeletePattern(ctx context.Context, req *resiliencev1.DeletePatternRequest) (*resiliencev1.DeletePatternResponse, error) {
	// The cache checks the pattern (its own bounds: cache.MaxPatternBytes,
	// a well-formed glob); toStatus names the field.
	ctx, cancel := withDefaultTimeout(ctx, patternTimeout)
	defer cancel()
	res, err := c.b.Cache.DeletePattern(ctx, req.GetPattern())
	if err != nil {
		return nil, toStatus(ctx, err)
	}
	c.logDegraded(ctx, "delete_pattern", res.Err)
	c.b.metrics.observeCache("delete_pattern", cacheResult(res.Degraded, true, "ok", ""))
	return &resiliencev1.DeletePatternResponse{Deleted: res.Deleted, Degraded: res.Degraded}, nil
}

func (c *cacheServer) GetStats(ctx context.Context, req *resiliencev1.GetStatsRequest) (*resiliencev1.GetStatsResponse, error) {
	ctx, cancel := withDefaultTimeout(ctx, patternTimeout)
	defer cancel()
	st, err := c.b.Cache.Stats(ctx)
	degraded := false
	if err != nil {
		if ctx.Err() != nil || !errors.Is(err, cache.ErrStoreUnavailable) {
			return nil, toStatus(ctx, err)
		}
		c.logDegraded(ctx, "stats", err)
		degraded = true
	}
	// A store that answers reads but refuses writes (OOM) makes these
	// figures stale: say so.
	degraded = degraded || c.srv.storeDown.Load()
	c.b.metrics.observeCache("stats", cacheResult(degraded, true, "ok", ""))
	return &resiliencev1.GetStatsResponse{
		Hits:     st.Hits,
		Misses:   st.Misses,
		Sets:     st.Sets,
		Deletes:  st.Deletes,
		Errors:   st.Errors,
		HitRatio: st.HitRatio,
		Keys:     st.Keys,
		Degraded: degraded,
	}, nil
}

// cacheResult is the result label of a cache answer.
func cacheResult(degraded, ok bool, yes, no string) string {
	switch {
	case degraded:
		return "degraded"
	case ok:
		return yes
	}
	return no
}

// withDefaultTimeout bounds ctx by d unless it already has a deadline.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

func checkKeys(keys []string) error {
	if len(keys) == 0 {
		return invalid("keys", "at least one key is required")
	}
	if len(keys) > maxDeleteKeys {
		return invalid("keys", "%d keys, more than the limit of %d per call", len(keys), maxDeleteKeys)
	}
	for i, k := range keys {
		if err := checkName(fmt.Sprintf("keys[%d]", i), k, true); err != nil {
			return err
		}
	}
	return nil
}
