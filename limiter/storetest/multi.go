package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/topdeck/resilience/internal/testkit"
	"github.com/topdeck/resilience/limiter"
)

// RunMulti runs the suite of several limits in one decision, concurrency
// slots and upstream pauses against the stores newStore builds, which must
// implement limiter.MultiStore and limiter.Pauser.
func RunMulti(t *testing.T, newStore NewStoreFunc) {
	t.Helper()
	run(t, suite{
		{"AllOrNothing", testAllOrNothing},
		{"AllOrNothingFirstKeyRefuses", testAllOrNothingFirstRefuses},
		{"LongestRetryAfter", testLongestRetryAfter},
		{"ThreeLimitsCharged", testThreeLimitsCharged},
		{"ReservedTogether", testReservedTogether},
		{"Shadow", testShadow},
		{"PeekAllChangesNothing", testPeekAll},
		{"Pause", testPause},
		{"PauseNeverShortened", testPauseNeverShortened},
		{"PauseRemainingOnlyLowers", testPauseRemaining},
		{"Slots", testSlots},
		{"SlotsExpire", testSlotsExpire},
		{"SlotsWithRate", testSlotsWithRate},
		{"SlotQueueFirstComeFirstServed", testSlotQueue},
		{"SlotsConcurrent", testSlotsConcurrent},
		{"MultiInvalidInput", testMultiInvalid},
	}, newStore)
}

type multiEnv struct {
	t     *testing.T
	clock *Clock
	s     limiter.Store
	ms    limiter.MultiStore
	ps    limiter.Pauser
}

func newMulti(t *testing.T, newStore NewStoreFunc) *multiEnv {
	t.Helper()
	clock, s := newStore.atStart(t)
	return &multiEnv{t: t, clock: clock, s: s, ms: as[limiter.MultiStore](t, s), ps: as[limiter.Pauser](t, s)}
}

func (e *multiEnv) takeAll(reqs []limiter.Request, o limiter.TakeAllOptions) limiter.MultiResult {
	e.t.Helper()
	res, err := e.ms.TakeAll(context.Background(), reqs, o)
	if err != nil {
		e.t.Fatalf("TakeAll(%v) at +%v: %v", keysOf(reqs), e.clock.Now().Sub(start), err)
	}
	if len(res.Results) != len(reqs) {
		e.t.Fatalf("TakeAll(%v): %d results, want %d", keysOf(reqs), len(res.Results), len(reqs))
	}
	return res
}

func (e *multiEnv) remaining(key string, lim limiter.Limit) int64 {
	e.t.Helper()
	res, err := e.s.Peek(context.Background(), key, lim, 1)
	if err != nil {
		e.t.Fatalf("Peek(%q): %v", key, err)
	}
	if res.Allowed {
		return res.Remaining + 1 // Peek answers with the token taken
	}
	return res.Remaining
}

func keysOf(reqs []limiter.Request) []string {
	var k []string
	for _, r := range reqs {
		k = append(k, r.Key)
	}
	return k
}

func rate(key string, lim limiter.Limit, cost int64) limiter.Request {
	return limiter.Request{Key: key, Limit: lim, Cost: cost}
}

func slots(key string, n int64, lease time.Duration) limiter.Request {
	return limiter.Request{Key: key, Cost: 1, Slots: limiter.Slots{MaxInFlight: n, Lease: lease}}
}

var fivePerHour = limiter.Limit{MaxCalls: 5, Window: time.Hour} // 12 minutes per token

// The keys of a pair are chosen to sit on different Cluster slots, so that
// on a Cluster the suite checks the give-backs.
const keyA, keyB, keyC = "user-1", "org-42", "global"

func testAllOrNothing(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	if _, err := e.s.Take(context.Background(), keyB, fivePerHour, 5, 0); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		res := e.takeAll([]limiter.Request{rate(keyA, fivePerHour, 1), rate(keyB, fivePerHour, 1)}, limiter.TakeAllOptions{})
		if res.Allowed || res.Refused != 1 || res.RetryAfter != 12*time.Minute {
			t.Fatalf("TakeAll with %q empty = %+v, want refused by limit 1 with retry 12m", keyB, res)
		}
		if !res.Results[0].Allowed || res.Results[0].Remaining != 5 || res.Results[1].Allowed {
			t.Errorf("per-limit answers %+v: want %q admitting with 5 left and %q refusing", res.Results, keyA, keyB)
		}
	}
	if got := e.remaining(keyA, fivePerHour); got != 5 {
		t.Errorf("%q after refused calls: %d tokens, want 5 (never charged)", keyA, got)
	}
}

func testAllOrNothingFirstRefuses(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	// Whatever the order the store takes them in, the refused call leaves
	// the admitting limit untouched: the empty key sorts first and last.
	for _, empty := range []string{"a-empty", "z-empty"} {
		if _, err := e.s.Take(context.Background(), empty, fivePerHour, 5, 0); err != nil {
			t.Fatal(err)
		}
		res := e.takeAll([]limiter.Request{rate("m-full", fivePerHour, 2), rate(empty, fivePerHour, 1)}, limiter.TakeAllOptions{})
		if res.Allowed || res.Refused != 1 {
			t.Fatalf("TakeAll with %q empty = %+v, want refused by limit 1", empty, res)
		}
		if got := e.remaining("m-full", fivePerHour); got != 5 {
			t.Errorf("m-full after a call refused by %q: %d tokens, want 5", empty, got)
		}
	}
}

func testLongestRetryAfter(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	tenPerSec := limiter.Limit{MaxCalls: 10, Window: time.Second, Burst: 1}
	ctx := context.Background()
	_, _ = e.s.Take(ctx, keyA, tenPerSec, 1, 0)
	_, _ = e.s.Take(ctx, keyB, fivePerHour, 5, 0)
	res := e.takeAll([]limiter.Request{rate(keyA, tenPerSec, 1), rate(keyB, fivePerHour, 1)}, limiter.TakeAllOptions{})
	if res.Allowed || res.Refused != 1 || res.RetryAfter != 12*time.Minute {
		t.Fatalf("got %+v, want refused by limit 1 (the longest) with 12m", res)
	}
	if res.Results[0].Allowed || res.Results[0].RetryAfter != 100*ms {
		t.Errorf("limit 0 answer %+v, want refused with 100ms", res.Results[0])
	}
}

func testThreeLimitsCharged(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	reqs := []limiter.Request{rate(keyA, fivePerHour, 1), rate(keyB, fivePerHour, 2), rate(keyC, fivePerHour, 3)}
	res := e.takeAll(reqs, limiter.TakeAllOptions{})
	if !res.Allowed || res.Refused != -1 || res.Wait != 0 || res.SlotID != "" {
		t.Fatalf("got %+v, want allowed", res)
	}
	for i, want := range []int64{4, 3, 2} {
		if r := res.Results[i]; !r.Allowed || r.Remaining != want {
			t.Errorf("limit %d: %+v, want allowed with %d left", i, r, want)
		}
		if got := e.remaining(reqs[i].Key, fivePerHour); got != want {
			t.Errorf("%q: %d tokens, want %d", reqs[i].Key, got, want)
		}
	}
	// The third now lacks a token: nothing is charged.
	res = e.takeAll(reqs, limiter.TakeAllOptions{})
	if res.Allowed || res.Refused != 2 {
		t.Fatalf("second call %+v, want refused by limit 2", res)
	}
	for i, want := range []int64{4, 3, 2} {
		if got := e.remaining(reqs[i].Key, fivePerHour); got != want {
			t.Errorf("after the refusal %q: %d tokens, want %d", reqs[i].Key, got, want)
		}
	}
}

func testReservedTogether(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	ctx := context.Background()
	l1 := limiter.Limit{MaxCalls: 10, Window: time.Second, Burst: 1} // 100ms per token
	l2 := limiter.Limit{MaxCalls: 4, Window: time.Second, Burst: 1}  // 250ms per token
	_, _ = e.s.Take(ctx, keyA, l1, 1, 0)
	_, _ = e.s.Take(ctx, keyB, l2, 1, 0)
	reqs := []limiter.Request{rate(keyA, l1, 1), rate(keyB, l2, 1)}
	if res := e.takeAll(reqs, limiter.TakeAllOptions{MaxWait: 200 * ms}); res.Allowed || res.Refused != 1 || res.RetryAfter != 250*ms {
		t.Fatalf("max_wait 200ms: %+v, want refused by limit 1 with 250ms", res)
	}
	res := e.takeAll(reqs, limiter.TakeAllOptions{MaxWait: 300 * ms})
	if !res.Allowed || res.Wait != 250*ms {
		t.Fatalf("max_wait 300ms: %+v, want allowed after 250ms", res)
	}
	// One script reserves both for +250ms; across Cluster slots each slot
	// reserves for its own instant, at most the call's.
	for i, r := range res.Results {
		if r.Wait <= 0 || r.Wait > 250*ms || r.Reservation.IsZero() {
			t.Errorf("limit %d: %+v, want reserved for at most 250ms", i, r)
		}
	}
	// Both are reserved for +250ms: at +250ms, l1 has refilled 1.5 tokens
	// less the reserved one, l2 none.
	e.clock.Advance(250 * ms)
	if got := e.remaining(keyB, l2); got != 0 {
		t.Errorf("%q at +250ms: %d tokens, want 0", keyB, got)
	}
	// Cancel gives each reservation back.
	c, ok := e.s.(limiter.Canceler)
	if !ok {
		return
	}
	for i, r := range reqs {
		if given, err := c.Cancel(ctx, r.Key, r.Limit, res.Results[i].Reservation); err != nil || !given {
			t.Errorf("Cancel of limit %d = %v, %v; want given back", i, given, err)
		}
	}
}

func testShadow(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	ctx := context.Background()
	_, _ = e.s.Take(ctx, keyB, fivePerHour, 5, 0)
	shadowB := rate(keyB, fivePerHour, 1)
	shadowB.Shadow = true
	res := e.takeAll([]limiter.Request{rate(keyA, fivePerHour, 1), shadowB}, limiter.TakeAllOptions{})
	if !res.Allowed || res.Refused != -1 || res.Results[1].Allowed {
		t.Fatalf("with an empty shadow limit: %+v, want allowed, the shadow limit answering refused", res)
	}
	if got := e.remaining(keyA, fivePerHour); got != 4 {
		t.Errorf("enforced limit: %d tokens, want 4", got)
	}
	// A shadow limit that admits is charged with the call; one that would
	// refuse is not, and an enforced refusal charges neither.
	shadowC := rate(keyC, fivePerHour, 2)
	shadowC.Shadow = true
	if res := e.takeAll([]limiter.Request{rate(keyA, fivePerHour, 1), shadowC}, limiter.TakeAllOptions{}); !res.Allowed {
		t.Fatalf("got %+v, want allowed", res)
	}
	if got := e.remaining(keyC, fivePerHour); got != 3 {
		t.Errorf("admitting shadow limit: %d tokens, want 3", got)
	}
	_, _ = e.s.Take(ctx, keyA, fivePerHour, 3, 0)
	if res := e.takeAll([]limiter.Request{rate(keyA, fivePerHour, 1), shadowC}, limiter.TakeAllOptions{}); res.Allowed || res.Refused != 0 {
		t.Fatalf("got %+v, want refused by limit 0", res)
	}
	if got := e.remaining(keyC, fivePerHour); got != 3 {
		t.Errorf("shadow limit of a refused call: %d tokens, want 3", got)
	}
}

func testPeekAll(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	reqs := []limiter.Request{rate(keyA, fivePerHour, 2), slots(keyB, 1, time.Second)}
	for range 3 {
		res, err := e.ms.PeekAll(context.Background(), reqs)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Allowed || res.Results[0].Remaining != 5 || res.Results[1].InFlight != 0 || res.SlotID != "" {
			t.Fatalf("PeekAll = %+v, want allowed, nothing taken", res)
		}
	}
	if got := e.remaining(keyA, fivePerHour); got != 5 {
		t.Errorf("after PeekAll: %d tokens, want 5", got)
	}
}

func (e *multiEnv) pause(key string, lim limiter.Limit, d time.Duration, remaining int64) limiter.PauseResult {
	e.t.Helper()
	res, err := e.ps.Pause(context.Background(), key, lim, d, remaining)
	if err != nil {
		e.t.Fatalf("Pause(%q, %v, %d): %v", key, d, remaining, err)
	}
	return res
}

func testPause(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	ctx := context.Background()
	if res := e.pause(keyA, limiter.Limit{}, 30*time.Second, -1); res.PausedFor != 30*time.Second {
		t.Fatalf("Pause = %+v, want paused for 30s", res)
	}
	e.clock.Advance(10 * time.Second)
	res, err := e.s.Take(ctx, keyA, fivePerHour, 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if want := (limiter.Result{Remaining: 5, RetryAfter: 20 * time.Second, Paused: true}); res != want {
		t.Errorf("Take on a paused key = %+v, want %+v", res, want)
	}
	if res, _ := e.s.Peek(ctx, keyA, fivePerHour, 1); !res.Paused || res.RetryAfter != 20*time.Second {
		t.Errorf("Peek on a paused key = %+v, want paused, retry 20s", res)
	}
	m := e.takeAll([]limiter.Request{rate(keyB, fivePerHour, 1), rate(keyA, fivePerHour, 1)}, limiter.TakeAllOptions{})
	if m.Allowed || m.Refused != 1 || !m.Results[1].Paused || m.RetryAfter != 20*time.Second {
		t.Errorf("TakeAll with a paused key = %+v, want refused by it, paused, 20s", m)
	}
	if got := e.remaining(keyB, fivePerHour); got != 5 {
		t.Errorf("other key of the refused call: %d tokens, want 5", got)
	}
	// The pause ends exactly when said: no later.
	e.clock.Advance(20*time.Second - us)
	if res, _ := e.s.Take(ctx, keyA, fivePerHour, 1, 0); res.Allowed || !res.Paused || res.RetryAfter != us {
		t.Errorf("1µs before the end: %+v, want paused for 1µs", res)
	}
	e.clock.Advance(us)
	if res, _ := e.s.Take(ctx, keyA, fivePerHour, 1, 0); !res.Allowed || res.Paused {
		t.Errorf("at the end of the pause: %+v, want allowed", res)
	}
}

func testPauseNeverShortened(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	e.pause(keyA, limiter.Limit{}, time.Minute, -1)
	if res := e.pause(keyA, limiter.Limit{}, time.Second, -1); res.PausedFor != time.Minute {
		t.Errorf("a shorter report: paused for %v, want 1m (never shortened)", res.PausedFor)
	}
	if res := e.pause(keyA, limiter.Limit{}, 2*time.Minute, -1); res.PausedFor != 2*time.Minute {
		t.Errorf("a longer report: paused for %v, want 2m", res.PausedFor)
	}
	if _, err := e.ps.Pause(context.Background(), keyA, limiter.Limit{}, limiter.MaxPause+us, -1); !errors.Is(err, limiter.ErrInvalidArgument) {
		t.Errorf("a pause above MaxPause: %v, want an invalid argument", err)
	}
}

func testPauseRemaining(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	ten := limiter.Limit{MaxCalls: 10, Window: time.Minute}
	if res := e.pause(keyA, ten, 0, 3); res.Remaining != 3 || res.PausedFor != 0 {
		t.Fatalf("remaining 3: %+v, want 3 left, no pause", res)
	}
	if got := e.remaining(keyA, ten); got != 3 {
		t.Errorf("bucket after remaining 3: %d, want 3", got)
	}
	if res := e.pause(keyA, ten, 0, 8); res.Remaining != 3 {
		t.Errorf("remaining 8 after 3: %+v, want still 3 (never raised)", res)
	}
	if got := e.remaining(keyA, ten); got != 3 {
		t.Errorf("bucket after remaining 8: %d, want 3", got)
	}
	if res := e.pause(keyA, ten, 0, 0); res.Remaining != 0 {
		t.Errorf("remaining 0: %+v, want 0", res)
	}
	e.clock.Advance(6 * time.Second) // one token refills
	if got := e.remaining(keyA, ten); got != 1 {
		t.Errorf("6s after remaining 0: %d tokens, want 1 (it refills at its rate)", got)
	}
}

func testSlots(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	reqs := []limiter.Request{slots(keyA, 2, time.Minute)}
	ids := []string{limiter.NewSlotID(), limiter.NewSlotID(), limiter.NewSlotID()}
	for i, want := range []int64{1, 2} {
		res := e.takeAll(reqs, limiter.TakeAllOptions{SlotID: ids[i]})
		if !res.Allowed || res.SlotID != ids[i] || res.Results[0].InFlight != want {
			t.Fatalf("slot %d: %+v, want allowed with %d in flight", i, res, want)
		}
	}
	res := e.takeAll(reqs, limiter.TakeAllOptions{SlotID: ids[2]})
	if res.Allowed || !res.Results[0].SlotsFull || res.Results[0].InFlight != 2 || res.RetryAfter != time.Minute || res.SlotID != "" || res.Queued {
		t.Fatalf("third: %+v, want refused, slots full, 2 in flight, retry 1m (the oldest lease)", res)
	}
	n, err := e.ms.ReleaseSlots(context.Background(), []string{keyA}, ids[0])
	if err != nil || n != 1 {
		t.Fatalf("ReleaseSlots = %d, %v; want 1", n, err)
	}
	if n, _ := e.ms.ReleaseSlots(context.Background(), []string{keyA}, ids[0]); n != 0 {
		t.Errorf("second ReleaseSlots = %d, want 0", n)
	}
	if res := e.takeAll(reqs, limiter.TakeAllOptions{SlotID: ids[2]}); !res.Allowed || res.Results[0].InFlight != 2 {
		t.Errorf("after a release: %+v, want allowed with 2 in flight", res)
	}
}

func testSlotsExpire(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	reqs := []limiter.Request{slots(keyA, 1, time.Second)}
	if res := e.takeAll(reqs, limiter.TakeAllOptions{SlotID: limiter.NewSlotID()}); !res.Allowed {
		t.Fatal("first slot refused")
	}
	e.clock.Advance(time.Second - us)
	if res := e.takeAll(reqs, limiter.TakeAllOptions{SlotID: limiter.NewSlotID()}); res.Allowed || res.RetryAfter != time.Millisecond {
		t.Fatalf("1µs before the lease ends: %+v, want refused with retry 1ms (the floor)", res)
	}
	e.clock.Advance(us)
	if res := e.takeAll(reqs, limiter.TakeAllOptions{SlotID: limiter.NewSlotID()}); !res.Allowed || res.Results[0].InFlight != 1 {
		t.Fatalf("when the lease ends: %+v, want the slot reclaimed", res)
	}
}

func testSlotsWithRate(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	both := limiter.Request{Key: keyA, Limit: fivePerHour, Cost: 1, Slots: limiter.Slots{MaxInFlight: 1, Lease: time.Minute}}
	res := e.takeAll([]limiter.Request{both, rate(keyB, fivePerHour, 1)}, limiter.TakeAllOptions{SlotID: limiter.NewSlotID()})
	if !res.Allowed || res.Results[0].Remaining != 4 || res.Results[0].InFlight != 1 {
		t.Fatalf("rate and slot: %+v, want allowed, 4 tokens and 1 slot", res)
	}
	// The slot is full: the rate limits are not charged.
	res = e.takeAll([]limiter.Request{both, rate(keyB, fivePerHour, 1)}, limiter.TakeAllOptions{SlotID: limiter.NewSlotID()})
	if res.Allowed || res.Refused != 0 || !res.Results[0].SlotsFull {
		t.Fatalf("slot full: %+v, want refused by limit 0's slots", res)
	}
	if a, b := e.remaining(keyA, fivePerHour), e.remaining(keyB, fivePerHour); a != 4 || b != 4 {
		t.Errorf("after a call refused for its slot: %d and %d tokens, want 4 and 4", a, b)
	}
	// An empty bucket keeps the slot free.
	_, _ = e.s.Take(context.Background(), keyC, fivePerHour, 5, 0)
	res = e.takeAll([]limiter.Request{slots(keyB, 1, time.Minute), rate(keyC, fivePerHour, 1)}, limiter.TakeAllOptions{SlotID: limiter.NewSlotID()})
	if res.Allowed || res.Results[0].InFlight != 0 {
		t.Fatalf("bucket empty: %+v, want refused, no slot held", res)
	}
	if res := e.takeAll([]limiter.Request{slots(keyB, 1, time.Minute)}, limiter.TakeAllOptions{SlotID: limiter.NewSlotID()}); !res.Allowed {
		t.Errorf("the slot a refused call did not take: %+v, want allowed", res)
	}
}

func testSlotQueue(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	reqs := []limiter.Request{slots(keyA, 1, time.Minute)}
	holder, first, second := limiter.NewSlotID(), limiter.NewSlotID(), limiter.NewSlotID()
	q := func(id string) limiter.TakeAllOptions {
		return limiter.TakeAllOptions{SlotID: id, MaxWait: time.Second, Queue: true}
	}
	if res := e.takeAll(reqs, q(holder)); !res.Allowed {
		t.Fatal("holder refused")
	}
	if res := e.takeAll(reqs, q(first)); res.Allowed || !res.Queued {
		t.Fatalf("first waiter: %+v, want refused and queued", res)
	}
	e.clock.Advance(ms)
	if res := e.takeAll(reqs, q(second)); res.Allowed || !res.Queued {
		t.Fatalf("second waiter: %+v, want refused and queued", res)
	}
	if _, err := e.ms.ReleaseSlots(context.Background(), []string{keyA}, holder); err != nil {
		t.Fatal(err)
	}
	// The freed slot is the first waiter's, even if the second asks first.
	if res := e.takeAll(reqs, q(second)); res.Allowed {
		t.Fatalf("second waiter before the first: %+v, want refused", res)
	}
	if res := e.takeAll(reqs, limiter.TakeAllOptions{SlotID: limiter.NewSlotID()}); res.Allowed {
		t.Fatalf("a newcomer: %+v, want refused (the queue comes first)", res)
	}
	if res := e.takeAll(reqs, q(first)); !res.Allowed {
		t.Fatalf("first waiter after the release: %+v, want allowed", res)
	}
	_, _ = e.ms.ReleaseSlots(context.Background(), []string{keyA}, first)
	if res := e.takeAll(reqs, q(second)); !res.Allowed {
		t.Fatalf("second waiter next: %+v, want allowed", res)
	}
	// A place not renewed within TicketTTL is dropped.
	_, _ = e.ms.ReleaseSlots(context.Background(), []string{keyA}, second)
	third := limiter.NewSlotID()
	if res := e.takeAll(reqs, q(holder)); !res.Allowed {
		t.Fatal("slot refused")
	}
	if res := e.takeAll(reqs, q(third)); !res.Queued {
		t.Fatal("third not queued")
	}
	_, _ = e.ms.ReleaseSlots(context.Background(), []string{keyA}, holder)
	e.clock.Advance(limiter.TicketTTL)
	if res := e.takeAll(reqs, limiter.TakeAllOptions{SlotID: limiter.NewSlotID()}); !res.Allowed {
		t.Errorf("after the waiter's place expired: %+v, want allowed", res)
	}
}

func testSlotsConcurrent(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	const maxInFlight, workers, rounds = 3, 12, 20
	reqs := []limiter.Request{slots(keyA, maxInFlight, time.Minute), rate(keyB, limiter.Limit{MaxCalls: 1 << 20, Window: time.Second}, 1)}
	var inFlight testkit.Gauge
	var admitted atomic.Int64
	for _, err := range testkit.Parallel(workers, func(int) error {
		for range rounds {
			id := limiter.NewSlotID()
			res, err := e.ms.TakeAll(context.Background(), reqs, limiter.TakeAllOptions{SlotID: id})
			if err != nil {
				return err
			}
			if !res.Allowed {
				continue
			}
			admitted.Add(1)
			inFlight.Enter()
			inFlight.Leave()
			if _, err := e.ms.ReleaseSlots(context.Background(), []string{keyA}, id); err != nil {
				return err
			}
		}
		return nil
	}) {
		t.Fatal(err)
	}
	if p := inFlight.Peak(); p > maxInFlight {
		t.Errorf("peak in flight %d, want at most %d", p, maxInFlight)
	}
	if admitted.Load() == 0 {
		t.Error("no call admitted")
	}
}

func testMultiInvalid(t *testing.T, newStore NewStoreFunc) {
	e := newMulti(t, newStore)
	nine := make([]limiter.Request, limiter.MaxLimitsPerCall+1)
	for i := range nine {
		nine[i] = rate(fmt.Sprintf("k%d", i), fivePerHour, 1)
	}
	for _, tc := range []struct {
		name  string
		reqs  []limiter.Request
		field string
	}{
		{"duplicate keys", []limiter.Request{rate(keyA, fivePerHour, 1), rate(keyA, fivePerHour, 1)}, "key"},
		{"too many", nine, "limits"},
		{"none", nil, "limits"},
		{"cost above burst", []limiter.Request{rate(keyA, fivePerHour, 6)}, "cost"},
		{"lease 0", []limiter.Request{{Key: keyA, Cost: 1, Slots: limiter.Slots{MaxInFlight: 1}}}, "in_flight_lease"},
		{"max_in_flight 0", []limiter.Request{{Key: keyA, Cost: 1, Slots: limiter.Slots{Lease: time.Second}}}, "max_in_flight"},
	} {
		_, err := e.ms.TakeAll(context.Background(), tc.reqs, limiter.TakeAllOptions{SlotID: limiter.NewSlotID()})
		if !InvalidFor(err, tc.field) {
			t.Errorf("%s: %v, want an invalid %s", tc.name, err, tc.field)
		}
	}
}
