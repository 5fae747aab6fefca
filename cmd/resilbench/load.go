package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// numCodes is the number of gRPC codes counted one by one; a code outside
// [0, numCodes) is counted as UNKNOWN.
const numCodes = int(codes.Unauthenticated) + 1

// callerStats is what one caller measured. It belongs to that caller's
// goroutine until the run ends, then is merged.
type callerStats struct {
	hist     Histogram
	codes    [numCodes]uint64
	outcomes [8]uint64
	samples  map[codes.Code]string // the first error message of each code
}

// record counts one measured call.
func (s *callerStats) record(d time.Duration, mask uint8, err error) {
	s.hist.Record(d)
	code := status.Code(err)
	if int(code) >= numCodes {
		code = codes.Unknown
	}
	s.codes[code]++
	if err != nil {
		if _, ok := s.samples[code]; !ok {
			if s.samples == nil {
				s.samples = make(map[codes.Code]string)
			}
			s.samples[code] = status.Convert(err).Message()
		}
		return
	}
	for i := range s.outcomes {
		if mask&(1<<i) != 0 {
			s.outcomes[i]++
		}
	}
}

// merge adds o to s.
func (s *callerStats) merge(o *callerStats) {
	s.hist.Merge(&o.hist)
	for i, n := range o.codes {
		s.codes[i] += n
	}
	for i, n := range o.outcomes {
		s.outcomes[i] += n
	}
	for c, msg := range o.samples {
		if _, ok := s.samples[c]; !ok {
			if s.samples == nil {
				s.samples = make(map[codes.Code]string)
			}
			s.samples[c] = msg
		}
	}
}

// runTarget prefills t if needed, then runs cfg.concurrency callers for
// cfg.warmup + cfg.duration, caller i on conns[i % len(conns)], and returns
// what was measured after the warmup. When ctx is cancelled the callers stop
// at once and the result, marked Interrupted, holds what was measured until
// then; calls cut short by the cancellation are not counted.
func runTarget(ctx context.Context, cfg config, t *target, conns []*grpc.ClientConn) (*runResult, error) {
	if t.prefill != nil {
		if err := t.prefill(ctx, cfg, conns); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w during the %s prefill", errInterrupted, t.name)
			}
			return nil, err
		}
	}
	factory := t.build(cfg)
	calls := make([]callFunc, cfg.concurrency)
	for i := range calls {
		calls[i] = factory(conns[i%len(conns)], i)
	}
	stats := make([]callerStats, cfg.concurrency)

	start := time.Now()
	measureFrom := start.Add(cfg.warmup)
	stopAt := measureFrom.Add(cfg.duration)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() { caller(ctx, cfg.timeout, calls[i], measureFrom, stopAt, &stats[i]) })
	}
	wg.Wait()
	elapsed := time.Since(measureFrom)

	var total callerStats
	for i := range stats {
		total.merge(&stats[i])
	}
	return newRunResult(cfg, t, &total, max(elapsed, 0), ctx.Err() != nil), nil
}

// caller issues calls one after the other until stopAt or until ctx is
// done, and records in s those that start at or after measureFrom.
func caller(ctx context.Context, timeout time.Duration, call callFunc, measureFrom, stopAt time.Time, s *callerStats) {
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(stopAt) {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		mask, err := call(cctx)
		cancel()
		d := time.Since(t0)
		if err != nil && ctx.Err() != nil {
			return // cut short by Ctrl-C: not a server error
		}
		if !t0.Before(measureFrom) {
			s.record(d, mask, err)
		}
	}
}
