package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// codeNames are the canonical names of the gRPC codes, as in
// google/rpc/code.proto, indexed by code.
var codeNames = [numCodes]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
	"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
	"INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// report is everything one invocation measured; it is the --output json
// document.
type report struct {
	// Runs holds one run, or two with --compare (health first).
	Runs []*runResult `json:"runs"`
	// Compare is set with --compare when both runs completed.
	Compare *comparison `json:"compare,omitempty"`
}

// runResult is what one RPC's run measured (after the warmup).
type runResult struct {
	RPC             string            `json:"rpc"`
	Addr            string            `json:"addr"`
	Concurrency     int               `json:"concurrency"`
	Conns           int               `json:"conns"`
	Keys            int               `json:"keys"`
	WarmupSeconds   float64           `json:"warmup_seconds"`
	DurationSeconds float64           `json:"duration_seconds"`
	ElapsedSeconds  float64           `json:"elapsed_seconds"` // measured time: end of warmup to the last call's return
	Interrupted     bool              `json:"interrupted"`
	Calls           uint64            `json:"calls"`  // measured calls, errors included
	Errors          uint64            `json:"errors"` // calls whose code is not OK
	Codes           map[string]uint64 `json:"codes"`  // calls by gRPC code (canonical names); they add up to calls
	ErrorSamples    map[string]string `json:"error_samples,omitempty"`
	Throughput      float64           `json:"throughput_per_second"` // calls / elapsed_seconds
	Latency         latency           `json:"latency_ms"`
	// Outcomes counts what the OK answers said, by name: allowed, denied,
	// degraded (Acquire); hit, miss, degraded (cache-get); stored,
	// not_stored, degraded (cache-set); serving, not_serving (health).
	// degraded overlaps the others.
	Outcomes map[string]uint64 `json:"outcomes"`

	outcomeOrder []string
	codeOrder    []codes.Code
}

// latency holds latencies in milliseconds.
type latency struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// newRunResult summarises the merged stats of a run of t.
func newRunResult(cfg config, t *target, s *callerStats, elapsed time.Duration, interrupted bool) *runResult {
	r := &runResult{
		RPC:             t.name,
		Addr:            cfg.addr,
		Concurrency:     cfg.concurrency,
		Conns:           cfg.conns,
		Keys:            cfg.keys,
		WarmupSeconds:   cfg.warmup.Seconds(),
		DurationSeconds: cfg.duration.Seconds(),
		ElapsedSeconds:  elapsed.Seconds(),
		Interrupted:     interrupted,
		Calls:           s.hist.Count(),
		Codes:           map[string]uint64{},
		Outcomes:        map[string]uint64{},
		outcomeOrder:    t.outcomes,
		Latency: latency{
			Min:  ms(s.hist.Min()),
			Mean: ms(s.hist.Mean()),
			P50:  ms(s.hist.Quantile(0.50)),
			P90:  ms(s.hist.Quantile(0.90)),
			P99:  ms(s.hist.Quantile(0.99)),
			P999: ms(s.hist.Quantile(0.999)),
			Max:  ms(s.hist.Max()),
		},
	}
	for c, n := range s.codes {
		if n == 0 {
			continue
		}
		code := codes.Code(c)
		r.Codes[codeNames[c]] = n
		r.codeOrder = append(r.codeOrder, code)
		if code != codes.OK {
			r.Errors += n
		}
	}
	for c, msg := range s.samples {
		if r.ErrorSamples == nil {
			r.ErrorSamples = map[string]string{}
		}
		r.ErrorSamples[codeNames[c]] = msg
	}
	for i, name := range t.outcomes {
		r.Outcomes[name] = s.outcomes[i]
	}
	if elapsed > 0 {
		r.Throughput = float64(r.Calls) / elapsed.Seconds()
	}
	return r
}

// firstError describes the most frequent error code and its sample message.
func (r *runResult) firstError() string {
	best, bestN := "", uint64(0)
	for _, c := range r.codeOrder {
		if name := codeNames[c]; c != codes.OK && r.Codes[name] > bestN {
			best, bestN = name, r.Codes[name]
		}
	}
	if best == "" {
		return "no errors"
	}
	return best + ": " + r.ErrorSamples[best]
}

// comparison relates a run of an RPC to the health-check baseline. GoalMet
// needs both goals met and no error in either run.
type comparison struct {
	Baseline            string  `json:"baseline"`
	RPC                 string  `json:"rpc"`
	ThroughputRatio     float64 `json:"throughput_ratio"` // rpc / baseline; 0 when the baseline has none
	P99Ratio            float64 `json:"p99_ratio"`        // rpc / baseline; 0 when the baseline has none
	P50Ratio            float64 `json:"p50_ratio"`        // rpc / baseline; 0 when the baseline has none
	GoalThroughputRatio float64 `json:"goal_throughput_ratio"`
	GoalP99Ratio        float64 `json:"goal_p99_ratio"`
	ThroughputGoalMet   bool    `json:"throughput_goal_met"`
	P99GoalMet          bool    `json:"p99_goal_met"`
	GoalMet             bool    `json:"goal_met"`
}

// compareRuns relates rpc to base (the health check).
func compareRuns(base, rpc *runResult) comparison {
	c := comparison{
		Baseline:            base.RPC,
		RPC:                 rpc.RPC,
		GoalThroughputRatio: goalThroughputRatio,
		GoalP99Ratio:        goalP99Ratio,
	}
	if base.Throughput > 0 {
		c.ThroughputRatio = rpc.Throughput / base.Throughput
	}
	if base.Latency.P99 > 0 {
		c.P99Ratio = rpc.Latency.P99 / base.Latency.P99
	}
	if base.Latency.P50 > 0 {
		c.P50Ratio = rpc.Latency.P50 / base.Latency.P50
	}
	c.ThroughputGoalMet = base.Throughput > 0 && c.ThroughputRatio >= goalThroughputRatio
	c.P99GoalMet = base.Latency.P99 > 0 && c.P99Ratio <= goalP99Ratio
	c.GoalMet = c.ThroughputGoalMet && c.P99GoalMet && rpc.Errors == 0 && base.Errors == 0
	return c
}

// writeRunText writes r for people.
func writeRunText(w io.Writer, r *runResult) {
	fmt.Fprintf(w, "rpc %s  addr %s  concurrency %d  conns %d  keys %d  warmup %v  duration %v",
		r.RPC, r.Addr, r.Concurrency, r.Conns, r.Keys,
		time.Duration(r.WarmupSeconds*float64(time.Second)), time.Duration(r.DurationSeconds*float64(time.Second)))
	if r.Interrupted {
		fmt.Fprint(w, "  (INTERRUPTED)")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  calls        %d in %.3fs  (errors %d)\n", r.Calls, r.ElapsedSeconds, r.Errors)
	fmt.Fprintf(w, "  throughput   %.1f calls/s\n", r.Throughput)
	l := r.Latency
	fmt.Fprintf(w, "  latency ms   p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (min %.3f, mean %.3f)\n",
		l.P50, l.P90, l.P99, l.P999, l.Max, l.Min, l.Mean)
	var fields []string
	for _, c := range r.codeOrder {
		fields = append(fields, fmt.Sprintf("%s %d", codeNames[c], r.Codes[codeNames[c]]))
	}
	fmt.Fprintf(w, "  codes        %s\n", strings.Join(fields, "  "))
	fields = fields[:0]
	for _, name := range r.outcomeOrder {
		fields = append(fields, fmt.Sprintf("%s %d", name, r.Outcomes[name]))
	}
	fmt.Fprintf(w, "  outcomes     %s\n", strings.Join(fields, "  "))
	for _, c := range r.codeOrder {
		if msg, ok := r.ErrorSamples[codeNames[c]]; ok {
			fmt.Fprintf(w, "  error        %s: %s\n", codeNames[c], msg)
		}
	}
}

// writeCompareText writes c for people.
func writeCompareText(w io.Writer, c comparison) {
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(w, "compare %s / %s\n", c.RPC, c.Baseline)
	fmt.Fprintf(w, "  throughput ratio  %.3f  (goal >= %.2f: %s)\n", c.ThroughputRatio, c.GoalThroughputRatio, met(c.ThroughputGoalMet))
	fmt.Fprintf(w, "  p99 ratio         %.3f  (goal <= %.2f: %s)\n", c.P99Ratio, c.GoalP99Ratio, met(c.P99GoalMet))
	fmt.Fprintf(w, "  p50 ratio         %.3f\n", c.P50Ratio)
}

// writeJSON writes rep as one indented JSON document.
func writeJSON(w io.Writer, rep report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("cannot write the report: %w", err)
	}
	return nil
}
