package pool_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/topdeck/resilience/client/pool"
)

func ExampleRun() {
	repos := []string{"api", "web", "infra", "docs"}
	results, sum := pool.Run(context.Background(), repos, func(ctx context.Context, repo string) (int, error) {
		switch repo {
		case "infra":
			return 0, status.Error(codes.Unavailable, "upstream down")
		case "docs":
			return 0, errors.New("no such repo")
		}
		return len(repo), nil
	}, pool.WithWorkers(2), pool.WithTaskTimeout(5*time.Second))

	for _, r := range results {
		fmt.Println(repos[r.Index], r.Value, r.Err)
	}
	fmt.Println(sum)
	for _, f := range sum.Failures {
		fmt.Printf("failed: %s (%s)\n", f.Item, f.Kind)
	}
	// Output:
	// api 3 <nil>
	// web 3 <nil>
	// infra 0 rpc error: code = Unavailable desc = upstream down
	// docs 0 no such repo
	// 4 items: 2 succeeded, 2 failed (*errors.errorString: 1, Unavailable: 1)
	// failed: infra (Unavailable)
	// failed: docs (*errors.errorString)
}

func ExampleTracker() {
	tr := pool.NewTracker[string](nil)
	tr.Record(0, "a", nil)
	tr.Record(1, "b", context.DeadlineExceeded)
	fmt.Println(tr.Summary())
	// Output: 2 items: 1 succeeded, 1 failed (DeadlineExceeded: 1)
}
