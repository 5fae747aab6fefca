package redisstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/redistest"
	"github.com/topdeck/resilience/limiter"
	"github.com/topdeck/resilience/limiter/redisstore"
)

// BenchmarkSeveralLimits measures one caller's decision on one Redis node:
// one limit (Take, gcra.lua, with its upstream-pause check) against three
// limits in one all-or-nothing TakeAll (multi.lua), and a concurrency slot
// with two rate limits. It reports Redis commands per decision: 1 in every
// case (one round trip).
func BenchmarkSeveralLimits(b *testing.B) {
	srv := redistest.Start(b)
	client := srv.Client()
	var cmds atomic.Int64
	client.AddHook(countHook{&cmds})
	lim := limiter.Limit{MaxCalls: 1_000_000, Window: time.Second}
	ctx := context.Background()
	s := redisstore.New(client, redisstore.WithBatching(false))
	three := []limiter.Request{{Key: "user-1", Limit: lim, Cost: 1}, {Key: "org-42", Limit: lim, Cost: 1}, {Key: "global", Limit: lim, Cost: 1}}
	slot := []limiter.Request{{Key: "user-1", Limit: lim, Cost: 1}, {Key: "org-42", Limit: lim, Cost: 1}, {Key: "ado", Cost: 1, Slots: limiter.Slots{MaxInFlight: 1_000_000, Lease: time.Minute}}}
	for _, bc := range []struct {
		name string
		run  func() error
	}{
		{"limits=1", func() error { _, err := s.Take(ctx, "user-1", lim, 1, 0); return err }},
		{"limits=3", func() error { _, err := s.TakeAll(ctx, three, limiter.TakeAllOptions{}); return err }},
		{"limits=2+slot", func() error {
			id := limiter.NewSlotID()
			if _, err := s.TakeAll(ctx, slot, limiter.TakeAllOptions{SlotID: id}); err != nil {
				return err
			}
			// Released, as a caller would, outside the timed decision's
			// command count (it is one more round trip of its own).
			_, err := s.ReleaseSlots(ctx, []string{"ado"}, id)
			return err
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if err := bc.run(); err != nil { // loads the script
				b.Fatal(err)
			}
			cmds.Store(0)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := bc.run(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cmds.Load())/float64(b.N), "cmds/op")
		})
	}
}

// BenchmarkTakeAllParallel measures three limits per decision from 64
// concurrent callers over 256 key triples (unbatched: one EVALSHA each).
func BenchmarkTakeAllParallel(b *testing.B) {
	srv := redistest.Start(b)
	s := redisstore.New(srv.Client())
	lim := limiter.Limit{MaxCalls: 1_000_000, Window: time.Second}
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1) % 256
			reqs := []limiter.Request{{Key: fmt.Sprint("u", i), Limit: lim, Cost: 1}, {Key: fmt.Sprint("o", i%16), Limit: lim, Cost: 1}, {Key: "g", Limit: lim, Cost: 1}}
			if _, err := s.TakeAll(ctx, reqs, limiter.TakeAllOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
