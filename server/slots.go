package server

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"google.golang.org/protobuf/types/known/durationpb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
	"github.com/topdeck/resilience/limiter"
)

// A slot token is "s1." + base64url(no padding) of: the slot id (16
// bytes), a flags byte (1: taken from this replica's local store, degraded),
// then each concurrency limit's key as a uvarint length and its bytes. It is
// self-contained, so the SDKs only pass it back, and it names keys in the
// caller's own tenant (the Release is served by that tenant's Backends): a
// token given to another tenant releases nothing of the first.
const slotTokenPrefix = "s1."

// maxSlotTokenBytes bounds a slot token (8 keys of 256 bytes, encoded).
const maxSlotTokenBytes = 4096

// encodeSlotToken is the token of the slots id took on keys.
func encodeSlotToken(id string, keys []string, degraded bool) string {
	raw, err := hex.DecodeString(id)
	if err != nil || len(raw) != 16 {
		return "" // never: the limiter's ids are 32 hex digits
	}
	b := make([]byte, 0, 17+len(keys)*(binary.MaxVarintLen16+MaxKeyBytes))
	b = append(b, raw...)
	flags := byte(0)
	if degraded {
		flags = 1
	}
	b = append(b, flags)
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return slotTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// errBadToken is the reason of every token this service did not issue.
var errBadToken = errors.New("is not a slot token this service issued")

// decodeSlotToken reads a token of encodeSlotToken.
func decodeSlotToken(tok string) (id string, keys []string, degraded bool, err error) {
	if len(tok) > maxSlotTokenBytes || len(tok) <= len(slotTokenPrefix) || tok[:len(slotTokenPrefix)] != slotTokenPrefix {
		return "", nil, false, errBadToken
	}
	b, err := base64.RawURLEncoding.DecodeString(tok[len(slotTokenPrefix):])
	if err != nil || len(b) < 17 || b[16] > 1 {
		return "", nil, false, errBadToken
	}
	id, degraded, b = hex.EncodeToString(b[:16]), b[16] == 1, b[17:]
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || n == 0 || n > MaxKeyBytes || uint64(len(b)-w) < n {
			return "", nil, false, errBadToken
		}
		keys = append(keys, string(b[w:w+int(n)]))
		b = b[w+int(n):]
		if len(keys) > limiter.MaxLimitsPerCall {
			return "", nil, false, errBadToken
		}
	}
	if len(keys) == 0 {
		return "", nil, false, errBadToken
	}
	return id, keys, degraded, nil
}

// Release gives back the slots of a slot token.
func (r *resilienceServer) Release(ctx context.Context, req *resiliencev1.ReleaseRequest) (*resiliencev1.ReleaseResponse, error) {
	if req.GetSlotToken() == "" {
		return nil, invalid("slot_token", "is required")
	}
	n, degraded, err := r.release(ctx, "slot_token", req.GetSlotToken())
	if err != nil {
		return nil, err
	}
	return &resiliencev1.ReleaseResponse{Released: n, Degraded: degraded}, nil
}

// release gives back the slots of tok (field names it for errors).
func (r *resilienceServer) release(ctx context.Context, field, tok string) (int64, bool, error) {
	id, keys, degraded, err := decodeSlotToken(tok)
	if err != nil {
		return 0, false, invalid(field, "%v", err)
	}
	n, err := r.b.Limiter.ReleaseSlots(ctx, keys, id, degraded)
	if err != nil {
		return 0, false, toStatus(ctx, err)
	}
	r.b.metrics.observeSlotsReleased(n)
	return n, degraded, nil
}

// ReportUpstream passes on what upstreams answered.
func (r *resilienceServer) ReportUpstream(ctx context.Context, req *resiliencev1.ReportUpstreamRequest) (*resiliencev1.ReportUpstreamResponse, error) {
	if len(req.GetFeedback()) == 0 {
		return nil, invalid("feedback", "is required: at least one entry")
	}
	results, err := r.upstream(ctx, "feedback", req.GetFeedback())
	if err != nil {
		return nil, err
	}
	return &resiliencev1.ReportUpstreamResponse{Results: results}, nil
}

// feedbackArgs is one validated UpstreamFeedback.
type feedbackArgs struct {
	key    string
	fb     limiter.Feedback
	policy limiter.FailurePolicy
	name   string // the policy's name, "" for inline or none
}

// parseFeedback validates fbs (field names them: "feedback" or
// "upstream"): at most limiter.MaxLimitsPerCall entries, keys distinct.
func (r *resilienceServer) parseFeedback(field string, fbs []*resiliencev1.UpstreamFeedback) ([]feedbackArgs, error) {
	if len(fbs) > limiter.MaxLimitsPerCall {
		return nil, invalid(field, "has %d entries, at most %d", len(fbs), limiter.MaxLimitsPerCall)
	}
	cfg := r.config()
	out := make([]feedbackArgs, 0, len(fbs))
	for i, f := range fbs {
		prefix := fmt.Sprintf("%s[%d].", field, i)
		a := feedbackArgs{key: f.GetKey(), name: f.GetPolicy()}
		if err := checkName(prefix+"key", a.key, true); err != nil {
			return nil, err
		}
		for _, prev := range out {
			if prev.key == a.key {
				return nil, invalid(prefix+"key", "%q is named twice", a.key)
			}
		}
		var err error
		if a.fb.RetryAfter, err = duration(prefix+"retry_after", f.GetRetryAfter()); err != nil {
			return nil, err
		}
		if a.fb.ResetAfter, err = duration(prefix+"reset_after", f.GetResetAfter()); err != nil {
			return nil, err
		}
		if f.Remaining != nil {
			a.fb.Remaining, a.fb.HasRemaining = f.GetRemaining(), true
			if a.fb.Remaining < 0 {
				return nil, invalid(prefix+"remaining", "must not be negative, got %d", a.fb.Remaining)
			}
		}
		if err := checkName(prefix+"policy", a.name, false); err != nil {
			return nil, err
		}
		if f.GetLimit() != nil || a.name != "" {
			l, err := resolveLimit(cfg, prefix, f.GetLimit(), a.name)
			if err != nil {
				return nil, err
			}
			if l.HasRate() {
				a.fb.Limit = l.Limiter()
			}
			a.policy = l.FailurePolicy()
		}
		if a.fb.HasRemaining && a.fb.Remaining > 0 && !a.fb.Limit.HasRate() {
			return nil, invalid(prefix+"remaining", "needs the key's rate limit (limit or policy) to lower its bucket")
		}
		out = append(out, a)
	}
	return out, nil
}

// upstream applies fbs, one pause per key.
func (r *resilienceServer) upstream(ctx context.Context, field string, fbs []*resiliencev1.UpstreamFeedback) ([]*resiliencev1.UpstreamResult, error) {
	args, err := r.parseFeedback(field, fbs)
	if err != nil {
		return nil, err
	}
	out := make([]*resiliencev1.UpstreamResult, 0, len(args))
	for _, a := range args {
		res, err := r.b.Limiter.Pause(ctx, a.key, a.fb, a.policy)
		if err != nil {
			return nil, toStatus(ctx, err)
		}
		label := a.name
		if label == "" {
			label = "inline"
		}
		r.b.metrics.observeUpstream(label, res.PausedFor > 0, res.Clamped)
		r.srv.log.DebugContext(ctx, "upstream feedback", "policy", label, "paused_for", res.PausedFor.String(), "clamped", res.Clamped)
		ur := &resiliencev1.UpstreamResult{Key: a.key, PausedFor: durationpb.New(res.PausedFor), Clamped: res.Clamped, Degraded: res.Degraded}
		if a.fb.HasRemaining {
			ur.Remaining = res.Remaining
		}
		out = append(out, ur)
	}
	return out, nil
}

// reportExtras releases the slots and passes on the feedback of a
// ReportOutcome, into resp.
func (r *resilienceServer) reportExtras(ctx context.Context, req *resiliencev1.ReportOutcomeRequest, resp *resiliencev1.ReportOutcomeResponse) error {
	if len(req.GetUpstream()) > 0 {
		res, err := r.upstream(ctx, "upstream", req.GetUpstream())
		if err != nil {
			return err
		}
		resp.Upstream = res
	}
	if tok := req.GetSlotToken(); tok != "" {
		n, degraded, err := r.release(ctx, "slot_token", tok)
		if err != nil {
			return err
		}
		resp.Released = n
		resp.Degraded = resp.Degraded || degraded
	}
	return nil
}

// validateReportExtras checks a ReportOutcome's slot_token and upstream
// before anything is recorded.
func (r *resilienceServer) validateReportExtras(req *resiliencev1.ReportOutcomeRequest) error {
	if tok := req.GetSlotToken(); tok != "" {
		if _, _, _, err := decodeSlotToken(tok); err != nil {
			return invalid("slot_token", "%v", err)
		}
	}
	_, err := r.parseFeedback("upstream", req.GetUpstream())
	return err
}

func (x resilienceRouter) Release(ctx context.Context, req *resiliencev1.ReleaseRequest) (*resiliencev1.ReleaseResponse, error) {
	return routed(x.s, ctx, req, resilienceOf, (*resilienceServer).Release)
}

func (x resilienceRouter) ReportUpstream(ctx context.Context, req *resiliencev1.ReportUpstreamRequest) (*resiliencev1.ReportUpstreamResponse, error) {
	return routed(x.s, ctx, req, resilienceOf, (*resilienceServer).ReportUpstream)
}
