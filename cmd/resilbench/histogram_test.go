package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsAreContiguous(t *testing.T) {
	// Every bucket starts right after the previous one ends, the last
	// bucket ends at maxTrackable, and no bucket is wider than 1/128 of its
	// lower bound (past the exact ones).
	lower := int64(0)
	for i := range numBuckets {
		if got := bucketIndex(lower); got != i {
			t.Fatalf("bucketIndex(%d): got %d, want %d", lower, got, i)
		}
		upper := bucketUpper(i)
		if got := bucketIndex(upper); got != i {
			t.Fatalf("bucketIndex(bucketUpper(%d) = %d): got %d, want %d", i, upper, got, i)
		}
		if upper < lower {
			t.Fatalf("bucket %d: upper %d < lower %d", i, upper, lower)
		}
		if width := upper - lower + 1; lower >= subBuckets && float64(width)/float64(lower) > 1.0/subBuckets {
			t.Fatalf("bucket %d [%d, %d]: width %d over 1/%d of its lower bound", i, lower, upper, width, subBuckets)
		}
		lower = upper + 1
	}
	if got, want := lower-1, maxTrackable; got != want {
		t.Errorf("last bucket ends at %d, want maxTrackable %d", got, want)
	}
}

func TestHistogramEmpty(t *testing.T) {
	var h Histogram
	for _, got := range []time.Duration{h.Min(), h.Max(), h.Mean(), h.Quantile(0), h.Quantile(0.5), h.Quantile(1)} {
		if got != 0 {
			t.Errorf("empty histogram: got %v, want 0", got)
		}
	}
	if h.Count() != 0 {
		t.Errorf("Count: got %d, want 0", h.Count())
	}
}

func TestHistogramExactBelow128ns(t *testing.T) {
	var h Histogram
	for v := range 100 {
		h.Record(time.Duration(v + 1)) // 1..100 ns
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, 1}, {0.01, 1}, {0.5, 50}, {0.9, 90}, {0.99, 99}, {0.999, 100}, {1, 100},
	}
	for _, tt := range tests {
		if got := h.Quantile(tt.q); got != tt.want {
			t.Errorf("Quantile(%v): got %v, want %v", tt.q, got, tt.want)
		}
	}
	if got, want := h.Mean(), 51*time.Nanosecond; got != want { // 50.5 rounds to 51
		t.Errorf("Mean: got %v, want %v", got, want)
	}
}

func TestHistogramQuantilesWithinOnePercent(t *testing.T) {
	// 1..100000 µs, shuffled: the q-quantile is q*100000 µs.
	values := make([]time.Duration, 100_000)
	for i := range values {
		values[i] = time.Duration(i+1) * time.Microsecond
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(values), func(i, j int) { values[i], values[j] = values[j], values[i] })
	var h Histogram
	for _, v := range values {
		h.Record(v)
	}
	if got, want := h.Count(), uint64(len(values)); got != want {
		t.Fatalf("Count: got %d, want %d", got, want)
	}
	for _, q := range []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999} {
		want := q * 100_000 * float64(time.Microsecond)
		got := float64(h.Quantile(q))
		if got < want || got > want*(1+1.0/subBuckets) {
			t.Errorf("Quantile(%v): got %v, want in [%v, +0.8%%]", q, time.Duration(got), time.Duration(want))
		}
	}
	if got, want := h.Min(), time.Microsecond; got != want {
		t.Errorf("Min: got %v, want %v", got, want)
	}
	if got, want := h.Max(), 100*time.Millisecond; got != want {
		t.Errorf("Max: got %v, want %v", got, want)
	}
	if got, want := h.Mean(), 50000500*time.Nanosecond; got != want {
		t.Errorf("Mean: got %v, want %v", got, want)
	}
}

func TestHistogramQuantilesOrderedAndBounded(t *testing.T) {
	// Heavy-tailed values: quantiles never decrease with q and stay in
	// [Min, Max]; Quantile(1) is Max.
	r := rand.New(rand.NewPCG(3, 4))
	var h Histogram
	for range 50_000 {
		h.Record(time.Duration(math.Exp(r.NormFloat64()*2+12)) * time.Nanosecond)
	}
	qs := []float64{0, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1}
	got := make([]time.Duration, len(qs))
	for i, q := range qs {
		got[i] = h.Quantile(q)
	}
	if !slices.IsSorted(got) {
		t.Errorf("quantiles %v of q %v: not ordered", got, qs)
	}
	if got[0] < h.Min() || got[len(got)-1] != h.Max() {
		t.Errorf("quantiles %v: got range [%v, %v], want [Min %v, Max %v]", got, got[0], got[len(got)-1], h.Min(), h.Max())
	}
}

func TestHistogramOutOfRange(t *testing.T) {
	var h Histogram
	h.Record(-time.Second) // counts as 0
	h.Record(time.Hour)    // past maxTrackable: in the last bucket, Max exact
	if got := h.Min(); got != 0 {
		t.Errorf("Min: got %v, want 0", got)
	}
	if got := h.Max(); got != time.Hour {
		t.Errorf("Max: got %v, want 1h", got)
	}
	if got := h.Quantile(0.5); got != 0 {
		t.Errorf("Quantile(0.5): got %v, want 0", got)
	}
	if got := h.Quantile(1); got != time.Hour {
		t.Errorf("Quantile(1): got %v, want 1h", got)
	}
	if got := h.Quantile(0.75); got < time.Duration(maxTrackable)/2 || got > time.Hour {
		t.Errorf("Quantile(0.75): got %v, want in the last bucket", got)
	}
}

func TestHistogramMergeEqualsRecordingAll(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var all, a, b, empty Histogram
	for i := range 10_000 {
		v := time.Duration(r.Int64N(int64(50 * time.Millisecond)))
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	var merged Histogram
	merged.Merge(&empty)
	merged.Merge(&a)
	merged.Merge(&b)
	merged.Merge(&empty)
	if merged.Count() != all.Count() || merged.Min() != all.Min() || merged.Max() != all.Max() {
		t.Errorf("merged count/min/max: got %d/%v/%v, want %d/%v/%v",
			merged.Count(), merged.Min(), merged.Max(), all.Count(), all.Min(), all.Max())
	}
	if d := merged.Mean() - all.Mean(); d < -1 || d > 1 {
		t.Errorf("merged Mean: got %v, want %v", merged.Mean(), all.Mean())
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		if got, want := merged.Quantile(q), all.Quantile(q); got != want {
			t.Errorf("merged Quantile(%v): got %v, want %v", q, got, want)
		}
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	d := time.Duration(1234567)
	for i := 0; b.Loop(); i++ {
		h.Record(d + time.Duration(i&1023))
	}
}

func BenchmarkHistogramQuantile(b *testing.B) {
	var h Histogram
	for i := range 100_000 {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for b.Loop() {
		h.Quantile(0.99)
	}
}
