package storetest

import "runtime"

// BytesPerItem returns the live heap growth per call of add over n calls,
// measured from one garbage collection to another: what a store keeps for
// each entry add puts in it. For a store's memory-size tests.
func BytesPerItem(n int, add func(i int)) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		add(i)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}
