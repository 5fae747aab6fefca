package pool

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"

	"google.golang.org/grpc/status"
)

// Failure is one failed item.
type Failure[T any] struct {
	// Index is the item's position in the batch.
	Index int
	// Item is the item itself.
	Item T
	// Err is its error.
	Err error
	// Kind is the error's kind (see Kind).
	Kind string
}

// Summary describes a batch. Total = Succeeded + Failed + Skipped.
type Summary[T any] struct {
	Total     int
	Succeeded int
	// Failed counts items whose task returned an error (or panicked).
	Failed int
	// Skipped counts items never started because the context ended.
	Skipped int
	// Kinds counts failures by kind.
	Kinds map[string]int
	// Failures lists every failure, by index.
	Failures []Failure[T]
}

// Err returns nil when nothing failed or was skipped, otherwise an error that
// joins every failure's error (errors.Is and errors.As see each of them),
// prefixed by the summary line.
func (s Summary[T]) Err() error {
	if s.Failed == 0 && s.Skipped == 0 {
		return nil
	}
	errs := make([]error, 0, len(s.Failures))
	for _, f := range s.Failures {
		errs = append(errs, fmt.Errorf("item %d: %w", f.Index, f.Err))
	}
	return fmt.Errorf("pool: %s: %w", s.String(), errors.Join(errs...))
}

// String returns a line such as
// "10 items: 7 succeeded, 3 failed (Unavailable: 2, DeadlineExceeded: 1)".
func (s Summary[T]) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d items: %d succeeded, %d failed", s.Total, s.Succeeded, s.Failed)
	if len(s.Kinds) > 0 {
		kinds := make([]string, 0, len(s.Kinds))
		for k := range s.Kinds {
			kinds = append(kinds, k)
		}
		sort.Slice(kinds, func(i, j int) bool {
			if s.Kinds[kinds[i]] != s.Kinds[kinds[j]] {
				return s.Kinds[kinds[i]] > s.Kinds[kinds[j]]
			}
			return kinds[i] < kinds[j]
		})
		b.WriteString(" (")
		for i, k := range kinds {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s: %d", k, s.Kinds[k])
		}
		b.WriteString(")")
	}
	if s.Skipped > 0 {
		fmt.Fprintf(&b, ", %d skipped", s.Skipped)
	}
	return b.String()
}

// Tracker records the outcomes of a batch: every failure with its item and
// index, and counts by kind. Run uses one; it can also be used alone.
//
// Create one with NewTracker; the zero value is not usable. A Tracker is safe
// for concurrent use.
type Tracker[T any] struct {
	kind func(error) string

	mu        sync.Mutex // protects the fields below
	succeeded int
	skipped   int
	kinds     map[string]int
	failures  []Failure[T]
}

// NewTracker returns an empty Tracker that classifies errors with kind (nil
// means Kind).
func NewTracker[T any](kind func(error) string) *Tracker[T] {
	if kind == nil {
		kind = Kind
	}
	return &Tracker[T]{kind: kind, kinds: make(map[string]int)}
}

// Record records the outcome of item at index: a success when err is nil.
func (t *Tracker[T]) Record(index int, item T, err error) {
	var k string
	if err != nil {
		k = t.kind(err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		t.succeeded++
		return
	}
	t.kinds[k]++
	t.failures = append(t.failures, Failure[T]{Index: index, Item: item, Err: err, Kind: k})
}

// Skip records that item at index was never run.
func (t *Tracker[T]) Skip(index int, item T) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.skipped++
}

// Summary returns what was recorded so far, failures sorted by index. The
// Summary is a copy: later records do not change it.
func (t *Tracker[T]) Summary() Summary[T] {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Summary[T]{
		Succeeded: t.succeeded,
		Failed:    len(t.failures),
		Skipped:   t.skipped,
		Kinds:     make(map[string]int, len(t.kinds)),
		Failures:  append([]Failure[T](nil), t.failures...),
	}
	s.Total = s.Succeeded + s.Failed + s.Skipped
	for k, v := range t.kinds {
		s.Kinds[k] = v
	}
	sort.SliceStable(s.Failures, func(i, j int) bool { return s.Failures[i].Index < s.Failures[j].Index })
	return s
}

// Kind is the default classification of an error: the code name of a gRPC
// status in the chain ("Unavailable"), "DeadlineExceeded" or "Canceled" for
// context errors, "Panic" for a *PanicError, otherwise the Go type of the
// innermost error ("*net.OpError", "*errors.errorString").
func Kind(err error) string {
	var pe *PanicError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &pe):
		return "Panic"
	case errors.Is(err, context.DeadlineExceeded):
		return "DeadlineExceeded"
	case errors.Is(err, context.Canceled):
		return "Canceled"
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Code().String()
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			break
		}
		err = next
	}
	return reflect.TypeOf(err).String()
}
