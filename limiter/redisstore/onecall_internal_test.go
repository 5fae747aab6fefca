package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/internal/redistest"
	"github.com/topdeck/resilience/limiter"
)

// decision is one decision of a batch built by a test.
type decision struct {
	mode    string
	key     string
	lim     limiter.Limit
	cost    int64
	maxWait time.Duration
}

// execBatch makes decisions through s.exec as one batch, as a leader would,
// and returns each call's result and error.
func execBatch(t *testing.T, s *Store, client *redis.Client, decisions []decision) ([]limiter.Result, []error) {
	t.Helper()
	batch := make([]*call, len(decisions))
	for i, d := range decisions {
		batch[i] = s.newCall()
		s.fill(batch[i], d.mode, d.key, d.lim, d.cost, d.maxWait)
	}
	s.exec(context.Background(), client, batch)
	res := make([]limiter.Result, len(batch))
	errs := make([]error, len(batch))
	for i, c := range batch {
		res[i], errs[i] = c.res, c.err
	}
	return res, errs
}

// evalshaCalls returns how many EVALSHA calls Redis has run.
func evalshaCalls(t *testing.T, client *redis.Client) int64 {
	t.Helper()
	info, err := client.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:calls="); ok {
			var n int64
			fmt.Sscanf(rest, "%d", &n)
			return n
		}
	}
	return 0
}

// TestOneCallMatchesSequential makes random batches, with keys repeated,
// takes, peeks and reservations, in one script call per batch on one node,
// and the same decisions one by one, unbatched, on another prefix at the
// same frozen instant: every result is the same, and each batch of up to
// maxPerCall decisions is one EVALSHA.
func TestOneCallMatchesSequential(t *testing.T) {
	client := redistest.Start(t).Client()
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	one := New(client, WithPrefix("one:"), WithClockForTesting(clock))
	seq := New(client, WithPrefix("seq:"), WithClockForTesting(clock), WithBatching(false))
	if !one.oneCall {
		t.Fatal("a *redis.Client store does not make a batch in one call")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	limits := []limiter.Limit{
		{MaxCalls: 5, Window: time.Second},
		{MaxCalls: 10, Window: time.Minute, Burst: 3},
		{MaxCalls: 7, Window: 3 * time.Second},
	}
	ctx := context.Background()
	for round := range 40 {
		n := 1 + rng.IntN(2*maxPerCall) // one call, or two in one pipeline
		ds := make([]decision, n)
		for i := range ds {
			d := decision{mode: modeTake, key: fmt.Sprint("k", rng.IntN(6)), lim: limits[rng.IntN(len(limits))], cost: 1}
			if rng.IntN(4) == 0 {
				d.mode = modePeek
			}
			if d.mode == modeTake && rng.IntN(3) == 0 {
				d.maxWait = time.Duration(rng.IntN(3000)) * time.Millisecond
			}
			ds[i] = d
		}
		before := evalshaCalls(t, client)
		got, errs := execBatch(t, one, client, ds)
		if calls, want := evalshaCalls(t, client)-before, int64((n+maxPerCall-1)/maxPerCall); calls != want {
			t.Fatalf("round %d: %d decisions took %d EVALSHA calls, want %d", round, n, calls, want)
		}
		for i, d := range ds {
			var want limiter.Result
			var err error
			if d.mode == modePeek {
				want, err = seq.Peek(ctx, d.key, d.lim, d.cost)
			} else {
				want, err = seq.Take(ctx, d.key, d.lim, d.cost, d.maxWait)
			}
			if err != nil || errs[i] != nil {
				t.Fatalf("round %d decision %d %+v: errors %v (sequential) and %v (one call)", round, i, d, err, errs[i])
			}
			if got[i] != want {
				t.Fatalf("round %d decision %d %+v: one call gave %+v, sequential %+v", round, i, d, got[i], want)
			}
		}
		// The buckets left behind are the same: one call writes a key taken
		// several times once, sequential decisions once per take. Each one
		// taken from in this round expires when it is full again (the
		// frozen clock's instant; Redis counts the expiry down in real time
		// since the write).
		taken := map[string]bool{}
		for i, d := range ds {
			taken[d.key] = taken[d.key] || d.mode == modeTake && got[i].Allowed
		}
		for k := range 6 {
			a, b := one.Key(fmt.Sprint("k", k)), seq.Key(fmt.Sprint("k", k))
			va, vb := client.Get(ctx, a).Val(), client.Get(ctx, b).Val()
			if va != vb {
				t.Fatalf("round %d: %s holds %q after one call, %s holds %q after sequential decisions", round, a, va, b, vb)
			}
			if !taken[fmt.Sprint("k", k)] {
				continue
			}
			var tat, rem, m, w, burst int64
			if _, err := fmt.Sscanf(va, "%d:%d:%d:%d:%d", &tat, &rem, &m, &w, &burst); err != nil {
				t.Fatalf("round %d: %s holds %q: %v", round, a, va, err)
			}
			full := time.UnixMicro(tat).Add(time.Duration((rem+m-1)/m) * time.Microsecond).Sub(now)
			want := max((full + time.Millisecond - 1).Truncate(time.Millisecond), time.Millisecond) // PX: whole ms, rounded up
			if got := client.PTTL(ctx, a).Val(); got > want || got < want-250*time.Millisecond {
				t.Fatalf("round %d: %s (%q) expires in %s, want %s (when it is full again), less the time since it was written", round, a, va, got, want)
			}
		}
		now = now.Add(time.Duration(rng.IntN(1500)) * time.Millisecond)
	}
}

// TestOneCallFailsDecisionsAlone: a decision on a malformed bucket value
// fails alone; the other decisions of its call are made, in order, and a
// paused key is refused. A write Redis refuses fails the whole call and
// changes nothing.
func TestOneCallFailsDecisionsAlone(t *testing.T) {
	client := redistest.Start(t).Client()
	ctx := context.Background()
	s := New(client, WithPrefix("f:"))
	lim := limiter.Limit{MaxCalls: 10, Window: time.Minute}
	if err := client.Set(ctx, s.Key("bad"), "not a bucket", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.Set(ctx, s.pauseKey("paused"), time.Now().Add(time.Hour).UnixMicro(), 0).Err(); err != nil {
		t.Fatal(err)
	}
	res, errs := execBatch(t, s, client, []decision{
		{mode: modeTake, key: "a", lim: lim, cost: 1},
		{mode: modeTake, key: "bad", lim: lim, cost: 1},
		{mode: modeTake, key: "a", lim: lim, cost: 2},
		{mode: modeTake, key: "paused", lim: lim, cost: 1},
	})
	if errs[0] != nil || !res[0].Allowed || res[0].Remaining != 9 {
		t.Errorf("first take of a = (%+v, %v), want allowed with 9 left", res[0], errs[0])
	}
	if !errors.Is(errs[1], limiter.ErrStoreUnavailable) || !strings.Contains(errs[1].Error(), "malformed bucket value") {
		t.Errorf("take of a malformed bucket: error %v, want a malformed bucket value wrapping ErrStoreUnavailable", errs[1])
	}
	if errs[2] != nil || !res[2].Allowed || res[2].Remaining != 7 {
		t.Errorf("second take of a = (%+v, %v), want allowed with 7 left (after the first)", res[2], errs[2])
	}
	if errs[3] != nil || res[3].Allowed || !res[3].Paused || res[3].RetryAfter < 59*time.Minute {
		t.Errorf("take of a paused key = (%+v, %v), want refused, paused, retry in about an hour", res[3], errs[3])
	}

	// Writes refused (Redis refuses only a script's first write): the whole
	// call fails, having changed nothing.
	if err := client.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.ConfigSet(context.Background(), "maxmemory", "0") })
	res, errs = execBatch(t, s, client, []decision{
		{mode: modeTake, key: "a", lim: lim, cost: 1},
		{mode: modePeek, key: "a", lim: lim, cost: 1},
		{mode: modeTake, key: "b", lim: lim, cost: 1},
	})
	for i := range errs {
		if !errors.Is(errs[i], limiter.ErrStoreUnavailable) || !strings.Contains(errs[i].Error(), "OOM") {
			t.Errorf("decision %d with writes refused: (%+v, %v), want an OOM error wrapping ErrStoreUnavailable", i, res[i], errs[i])
		}
	}
	if err := client.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	res, errs = execBatch(t, s, client, []decision{
		{mode: modePeek, key: "a", lim: lim, cost: 1},
		{mode: modePeek, key: "b", lim: lim, cost: 1},
	})
	if errs[0] != nil || !res[0].Allowed || res[0].Remaining != 6 || errs[1] != nil || res[1].Remaining != 9 {
		t.Errorf("peeks after = (%+v, %v), (%+v, %v), want 6 and 9 left: the refused call took nothing", res[0], errs[0], res[1], errs[1])
	}
}
