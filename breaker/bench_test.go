package breaker_test

import (
	"context"
	"testing"

	"github.com/topdeck/resilience/breaker"
)

func BenchmarkMemoryAllowClosed(b *testing.B) {
	s := breaker.NewMemoryStore()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Allow(ctx, "bench", pol); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkMemoryReport(b *testing.B) {
	s := breaker.NewMemoryStore()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Report(ctx, "bench", pol, breaker.OutcomeSuccess, 0, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
}
