// Package storehealth tracks whether a shared store (Redis) is answering, so
// that once it is known to be down or hung, calls stop waiting on it: a dead
// or hung store costs the calls in flight when it failed one timeout each,
// not one timeout per call for as long as it lasts.
//
// # Model
//
// A [Tracker] is healthy or down. While healthy, every call goes to the store
// ([Tracker.Begin] answers ok). The first call that fails (its outcome is
// [Failed]) marks the tracker down. While down, calls are not sent to the
// store: Begin answers !ok at once, and the caller answers by its own failure
// policy (a local fallback, or "unavailable") without waiting. Once the retry
// interval has passed since the failure, one caller at a time is let through
// as a probe (Begin answers ok with [Call.Probe] true); a probe that succeeds
// marks the tracker healthy again, one that fails starts another interval,
// and one whose outcome says nothing about the store ([Unknown]: its caller
// gave up, say) lets the next caller probe at once. A probe whose outcome is
// never reported is presumed lost after one more interval.
//
// So when the store answers again, calls use it within about one retry
// interval (plus the probe's round trip), and while it is down at most one
// call per interval waits on it.
//
// The Tracker starts no goroutine and reads time only from its clock (see
// [WithClock]), and only when something changes or it is down: the healthy
// path is one atomic load, no lock and no clock read.
//
// # Use
//
//	call, ok := tracker.Begin()
//	if !ok {
//		return answerByPolicy(storehealth.ErrDown) // at once, no store call
//	}
//	res, err := store.Do(ctx, ...)
//	call.End(storehealth.OutcomeOf(ctx, err))
//
// Every Call that Begin gave with ok must be ended exactly once; [OutcomeOf]
// classifies an error the usual way: nil is [Succeeded], an error while the
// caller's own context is done is [Unknown] (the caller gave up; the store may
// be fine), anything else is [Failed]. Callers with their own notion of
// failure (errors that mean "bad input", not "store down") pass [Unknown] for
// those.
//
// One Tracker belongs to one store (one Redis client): the limiter and the
// cache each keep their own, so a hung cache Redis never sends limits to
// their fallback.
package storehealth
