package main

import (
	"math"
	"math/bits"
	"time"
)

// Histogram layout: log-linear buckets in the manner of HdrHistogram.
//
// Values are nanoseconds. Values below subBuckets (128 ns) get one bucket
// each, so they are exact. Above that, every octave [2^k, 2^(k+1)) is split
// into subBuckets equal buckets, addressed by the top subBits+1 bits of the
// value, so a bucket is at most 1/128 of its lower bound wide: every reported
// quantile is within 0.8% of the true one.
//
// The index of v >= subBuckets is shift*subBuckets + (v >> shift), where
// shift = bits.Len64(v) - (subBits+1); (v >> shift) lies in [subBuckets,
// 2*subBuckets). Indexes are contiguous: index 128 is [128, 129), index 256
// is [256, 258), index 384 is [512, 516), and so on.
const (
	subBits    = 7
	subBuckets = 1 << subBits // 128
	// maxTrackable is the largest value given its own bucket (about 18
	// minutes); larger values are counted in the last bucket. Max stays exact.
	maxTrackable = int64(1)<<41 - 1
	// numBuckets covers [0, maxTrackable]: bits.Len64(maxTrackable) = 41, so
	// the largest shift is 41-8 = 33 and the largest index 33*128+255.
	numBuckets = (41-(subBits+1))*subBuckets + 2*subBuckets
)

// Histogram records latencies in fixed memory (about 36 KiB, whatever the
// number of values) with a relative error below 1% on quantiles. Min, Max,
// Mean and Count are exact.
//
// The zero value is an empty histogram ready to use. A Histogram is not safe
// for concurrent use: give each goroutine its own and Merge them at the end.
type Histogram struct {
	counts   [numBuckets]uint64
	count    uint64
	sum      float64 // nanoseconds; float64 so that it cannot overflow
	min, max int64   // nanoseconds; valid when count > 0
}

// bucketIndex returns the bucket of v (0 <= v <= maxTrackable).
func bucketIndex(v int64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - (subBits + 1)
	return shift*subBuckets + int(v>>uint(shift))
}

// bucketUpper returns the largest value that falls in bucket i.
func bucketUpper(i int) int64 {
	if i < subBuckets {
		return int64(i)
	}
	shift := i/subBuckets - 1
	mantissa := int64(i - shift*subBuckets)
	return (mantissa+1)<<uint(shift) - 1
}

// Record adds one latency. Negative durations count as 0.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	if h.count == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.count++
	h.sum += float64(v)
	h.counts[bucketIndex(min(v, maxTrackable))]++
}

// Merge adds every value recorded in o to h. o is not changed.
func (h *Histogram) Merge(o *Histogram) {
	if o.count == 0 {
		return
	}
	if h.count == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.count += o.count
	h.sum += o.sum
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// Count returns how many values were recorded.
func (h *Histogram) Count() uint64 { return h.count }

// Min returns the smallest value recorded (0 when empty).
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max returns the largest value recorded (0 when empty).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean of the values recorded (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.count == 0 {
		return 0
	}
	return time.Duration(math.Round(h.sum / float64(h.count)))
}

// Quantile returns the value below or at which a fraction q (0 <= q <= 1) of
// the recorded values lie: the upper bound of the bucket holding the
// ceil(q*Count)-th smallest value, capped to [Min, Max]. It is 0 when the
// histogram is empty. Quantile is monotonic in q, and Quantile(1) == Max.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(h.count)))
	if rank < 1 {
		rank = 1
	}
	if rank >= h.count {
		return time.Duration(h.max)
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(max(bucketUpper(i), h.min), h.max))
		}
	}
	return time.Duration(h.max) // not reached: the counts add up to count
}
