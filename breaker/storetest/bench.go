package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/topdeck/resilience/breaker"
)

// NewBenchStoreFunc builds the store a benchmark runs against, on the
// store's own clock.
type NewBenchStoreFunc func(b *testing.B) breaker.Store

// Benchmark runs the shared benchmarks of a breaker.Store, the same for every
// store so that their figures compare: AllowClosed (the hot path),
// ReportSuccess and ReportFailureRate (a rolling window that never trips),
// each from parallel goroutines on one breaker.
func Benchmark(b *testing.B, newStore NewBenchStoreFunc) {
	consecutive := mustSettings(b, breaker.Settings{FailureThreshold: 2, RecoveryTimeout: 30 * time.Second, ProbeTimeout: 5 * time.Second})
	rate := mustSettings(b, breaker.Settings{Mode: breaker.ModeFailureRate, MinimumCalls: 1_000_000})
	ctx := context.Background()
	b.Run("AllowClosed", func(b *testing.B) {
		s := newStore(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Allow(ctx, "bench", consecutive); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("ReportSuccess", func(b *testing.B) {
		s := newStore(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Report(ctx, "bench", consecutive, breaker.OutcomeSuccess, 0, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("ReportFailureRate", func(b *testing.B) {
		s := newStore(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				o := breaker.OutcomeSuccess
				if i%3 == 0 {
					o = breaker.OutcomeFailure
				}
				i++
				if _, err := s.Report(ctx, "bench", rate, o, 0, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

func mustSettings(b *testing.B, s breaker.Settings) breaker.Settings {
	b.Helper()
	v, err := breaker.NewSettings(s)
	if err != nil {
		b.Fatal(err)
	}
	return v
}
