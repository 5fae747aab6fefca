package server

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/topdeck/resilience/config"
	"github.com/topdeck/resilience/limiter"
)

// tenantRate bounds the rate of calls each tenant makes to this replica, so
// that one tenant flooding the service cannot starve the others. It is a
// local, in-process GCRA bucket per tenant (the limiter's memory store): the
// bound is per replica, so a fleet of N replicas takes at most N times it,
// and it costs no store round trip. The implicit tenant is not bounded.
//
// Create it with newTenantRate; it is safe for concurrent use.
type tenantRate struct {
	store *limiter.MemoryStore
}

func newTenantRate() *tenantRate { return &tenantRate{store: limiter.NewMemoryStore()} }

// admit takes one call of tenant under l. A call above the rate waits for
// its turn up to l.MaxRequestWait (and never past ctx's deadline); beyond
// that it is refused at once with RESOURCE_EXHAUSTED and a RetryInfo saying
// when the next call would be admitted.
func (t *tenantRate) admit(ctx context.Context, tenant string, l config.TenantLimits) error {
	if tenant == "" || l.RequestsPerSecond <= 0 {
		return nil
	}
	lim := limiter.Limit{MaxCalls: l.RequestsPerSecond, Window: time.Second, Burst: max(l.RequestBurst, 1)}
	wait := l.MaxRequestWait.D()
	if dl, ok := ctx.Deadline(); ok {
		wait = max(min(wait, time.Until(dl)-deadlineMargin), 0)
	}
	res, err := t.store.Take(ctx, tenant, lim, 1, wait)
	if err != nil {
		// Only an invalid limit fails, which config.Parse refuses.
		return status.Errorf(codes.Internal, "tenant request rate: %v", err)
	}
	if res.Allowed && res.Wait > 0 {
		tm := time.NewTimer(res.Wait)
		defer tm.Stop()
		select {
		case <-tm.C:
		case <-ctx.Done():
			_, _ = t.store.Cancel(context.WithoutCancel(ctx), tenant, lim, res.Reservation)
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	if res.Allowed {
		return nil
	}
	msg := fmt.Sprintf("tenant %q is over its request rate to this replica (%d/s, burst %d); retry after %s",
		tenant, l.RequestsPerSecond, lim.Burst, res.RetryAfter)
	st := status.New(codes.ResourceExhausted, msg)
	if d, err := st.WithDetails(
		&errdetails.RetryInfo{RetryDelay: durationpb.New(res.RetryAfter)},
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
			Subject:     "tenant:" + tenant,
			Description: "requests_per_second of the tenant (auth.tenants or auth.tenant_defaults)",
		}}},
	); err == nil {
		st = d
	}
	return st.Err()
}
