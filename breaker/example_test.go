package breaker_test

import (
	"context"
	"fmt"
	"time"

	"github.com/topdeck/resilience/breaker"
)

// A call guarded by a breaker: Allow, call, Report with the generation and
// permit that Allow gave.
func Example() {
	ctx := context.Background()
	b := breaker.New(breaker.NewMemoryStore())
	defer b.Close()
	policy := breaker.Settings{FailureThreshold: 2, RecoveryTimeout: time.Minute}

	for i := 0; i < 3; i++ {
		adm, err := b.Allow(ctx, "payments-api", policy)
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		if !adm.Allowed {
			fmt.Printf("call %d: denied, state %v, retry in about %v\n", i, adm.State, adm.RetryAfter.Round(time.Minute))
			continue
		}
		upstreamErr := fmt.Errorf("upstream timeout") // the call failed
		outcome := breaker.OutcomeSuccess
		if upstreamErr != nil {
			outcome = breaker.OutcomeFailure
		}
		res, _ := b.Report(ctx, "payments-api", policy, outcome, adm.Generation, adm.PermitID)
		fmt.Printf("call %d: failed, state now %v\n", i, res.State)
	}
	// Output:
	// call 0: failed, state now CLOSED
	// call 1: failed, state now OPEN
	// call 2: denied, state OPEN, retry in about 1m0s
}
