package server

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

// cacheServer implements CacheService.
type cacheServer struct {
	resiliencev1.UnimplementedCacheServiceServer
	srv  *Server
	deps Deps
}

// maxDeleteKeys bounds one Delete call.
const maxDeleteKeys = 1000

func (c *cacheServer) Get(ctx context.Context, req *resiliencev1.GetRequest) (*resiliencev1.GetResponse, error) {
	if err := checkName("key", req.GetKey(), true); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "Get is not implemented yet")
}

func (c *cacheServer) Set(ctx context.Context, req *resiliencev1.SetRequest) (*resiliencev1.SetResponse, error) {
	if err := checkName("key", req.GetKey(), true); err != nil {
		return nil, err
	}
	if _, err := duration("ttl", req.GetTtl()); err != nil {
		return nil, err
	}
	if max := c.srv.Config().Cache.MaxValueBytes; int64(len(req.GetValue())) > max {
		return nil, invalid("value", "is %d bytes, above max_value_bytes %d", len(req.GetValue()), max)
	}
	return nil, status.Error(codes.Unimplemented, "Set is not implemented yet")
}

func (c *cacheServer) Delete(ctx context.Context, req *resiliencev1.DeleteRequest) (*resiliencev1.DeleteResponse, error) {
	if err := checkKeys(req.GetKeys()); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "Delete is not implemented yet")
}

func (c *cacheServer) DeletePattern(ctx context.Context, req *resiliencev1.DeletePatternRequest) (*resiliencev1.DeletePatternResponse, error) {
	if err := checkName("pattern", req.GetPattern(), true); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "DeletePattern is not implemented yet")
}

func (c *cacheServer) GetStats(ctx context.Context, req *resiliencev1.GetStatsRequest) (*resiliencev1.GetStatsResponse, error) {
	return nil, status.Error(codes.Unimplemented, "GetStats is not implemented yet")
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
