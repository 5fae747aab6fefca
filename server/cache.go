package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
	var opts []cache.GetOption
	if req.GetFresh() {
		opts = append(opts, cache.FromStore())
	}
	res, err := c.b.Cache.Get(ctx, req.GetKey(), opts...)
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

// WatchInvalidations serves CacheService.WatchInvalidations for the
// caller's tenant: its Backends' Cache follows the invalidations of that
// tenant's key prefix only (one Redis channel per prefix), so a stream never
// carries another tenant's keys.
func (x cacheRouter) WatchInvalidations(req *resiliencev1.WatchInvalidationsRequest, stream resiliencev1.CacheService_WatchInvalidationsServer) error {
	r, err := x.s.routeFor(stream.Context())
	if err != nil {
		return err
	}
	return r.cache.WatchInvalidations(req, stream)
}

// WatchInvalidations streams the Cache's invalidations (see cache.Watch),
// starting with a RESYNC. The stream ends with UNAVAILABLE when the
// replica's subscription to them breaks or the caller falls behind by
// cache.WatchBuffer (invalidations may then have been missed), and when the
// server shuts down. The number of streams of one tenant on a replica is
// bounded by cache.DefaultMaxWatchers (RESOURCE_EXHAUSTED beyond it).
func (c *cacheServer) WatchInvalidations(_ *resiliencev1.WatchInvalidationsRequest, stream resiliencev1.CacheService_WatchInvalidationsServer) error {
	// The watch ends with the caller, or when the server shuts down: a
	// stream never finishes on its own and would hold a graceful stop.
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stop := context.AfterFunc(c.srv.streamsCtx, cancel)
	defer stop()
	// A tenant's Backends start on its first call: give their subscription
	// a moment rather than refuse the first stream.
	actx, acancel := context.WithTimeout(ctx, followWait)
	_ = c.b.Cache.AwaitFollowing(actx)
	acancel()
	ch, err := c.b.Cache.Watch(ctx)
	switch {
	case errors.Is(err, cache.ErrTooManyWatchers):
		return status.Error(codes.ResourceExhausted, "this replica has as many invalidation streams of this tenant open as it allows; close one or watch on another replica")
	case errors.Is(err, cache.ErrFeedDown):
		c.srv.log.DebugContext(ctx, "invalidation stream refused", "error", err.Error())
		return status.Error(codes.Unavailable, "this replica does not follow the cache's invalidations now (shared store unreachable); bypass the near cache and watch again")
	case err != nil:
		return toStatus(ctx, err)
	}
	for inv := range ch {
		if err := stream.Send(&resiliencev1.WatchInvalidationsResponse{Invalidation: invalidationProto(inv)}); err != nil {
			return err
		}
	}
	switch {
	case c.srv.streamsCtx.Err() != nil && stream.Context().Err() == nil:
		return status.Error(codes.Unavailable, "server shutting down; watch again on another replica")
	case ctx.Err() != nil:
		return toStatus(ctx, ctx.Err())
	}
	return status.Error(codes.Unavailable, "invalidations may have been missed (the replica's subscription broke, or this stream fell behind): drop every entry held and watch again")
}

// followWait bounds how long WatchInvalidations waits for the replica to
// follow the cache's invalidations before it refuses the stream.
const followWait = 2 * time.Second

// invalidationProto maps an invalidation to the API's.
func invalidationProto(inv cache.Invalidation) *resiliencev1.Invalidation {
	out := &resiliencev1.Invalidation{Keys: inv.Keys, Pattern: inv.Pattern}
	switch inv.Kind {
	case cache.InvalidateSet:
		out.Kind = resiliencev1.InvalidationKind_INVALIDATION_KIND_SET
	case cache.InvalidateDelete:
		out.Kind = resiliencev1.InvalidationKind_INVALIDATION_KIND_DELETE
	case cache.InvalidatePattern:
		out.Kind = resiliencev1.InvalidationKind_INVALIDATION_KIND_DELETE_PATTERN
	default:
		out.Kind = resiliencev1.InvalidationKind_INVALIDATION_KIND_RESYNC
	}
	return out
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
