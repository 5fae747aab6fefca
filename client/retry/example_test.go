package retry_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/topdeck/resilience/client/retry"
)

func ExampleDo() {
	attempts := 0
	err := retry.Do(context.Background(), retry.Config{MaxAttempts: 4, InitialDelay: time.Millisecond},
		func(ctx context.Context) error {
			attempts++
			if attempts < 3 {
				return errors.New("temporary failure")
			}
			return nil
		})
	fmt.Println(err, attempts)
	// Output: <nil> 3
}

func ExamplePermanent() {
	attempts := 0
	err := retry.Do(context.Background(), retry.Config{MaxAttempts: 5, InitialDelay: time.Millisecond},
		func(ctx context.Context) error {
			attempts++
			return retry.Permanent(errors.New("bad credentials"))
		})
	fmt.Println(err, attempts)
	// Output: bad credentials 1
}

func ExampleResponseError() {
	calls := 0
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	defer upstream.Close()

	err := retry.Do(context.Background(), retry.Config{InitialDelay: time.Millisecond}, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, upstream.URL, nil)
		resp, err := upstream.Client().Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return retry.ResponseError(resp, time.Now())
	})
	fmt.Println(err, calls)
	// Output: <nil> 2
}

func ExampleParseRetryAfter() {
	d, ok := retry.ParseRetryAfter("120", time.Now())
	fmt.Println(d, ok)
	// Output: 2m0s true
}
