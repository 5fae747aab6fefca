package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	resiliencev1 "github.com/topdeck/resilience/gen/topdeck/resilience/v1"
)

// jsonOptions is the proto3 JSON mapping used by --output json (see the
// package doc).
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// marshalJSON renders m compactly; protojson's own whitespace is
// deliberately unstable, so it is normalised here.
func marshalJSON(m proto.Message) ([]byte, error) {
	b, err := jsonOptions.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("cannot encode %s as JSON: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, fmt.Errorf("cannot encode %s as JSON: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return buf.Bytes(), nil
}

// writeIndented writes compact JSON b indented by two spaces, with a newline.
func writeIndented(w io.Writer, b []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// writeJSON prints one message, indented.
func writeJSON(w io.Writer, m proto.Message) error {
	b, err := marshalJSON(m)
	if err != nil {
		return err
	}
	return writeIndented(w, b)
}

// writeJSONLine prints one message on one line (newline-delimited JSON).
func writeJSONLine(w io.Writer, m proto.Message) error {
	b, err := marshalJSON(m)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeJSONBreakers prints {"breakers": [...]}, indented.
func writeJSONBreakers(w io.Writer, sts []*resiliencev1.BreakerStatus) error {
	var buf bytes.Buffer
	buf.WriteString(`{"breakers":[`)
	for i, st := range sts {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, err := marshalJSON(st)
		if err != nil {
			return err
		}
		buf.Write(b)
	}
	buf.WriteString(`]}`)
	return writeIndented(w, buf.Bytes())
}

// kv is one "field  value" row of a vertical table.
type kv struct{ k, v string }

// writeKV prints rows aligned in two columns.
func writeKV(w io.Writer, rows []kv) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r.k, r.v)
	}
	return tw.Flush()
}

// stateName is a circuit state without its enum prefix (OPEN).
func stateName(s resiliencev1.CircuitState) string {
	return strings.TrimPrefix(s.String(), "CIRCUIT_STATE_")
}

// reasonName is an acquire reason without its enum prefix (RATE_LIMITED).
func reasonName(r resiliencev1.AcquireReason) string {
	return strings.TrimPrefix(r.String(), "ACQUIRE_REASON_")
}

// timeText is a timestamp in UTC with milliseconds, or "-" when unset.
func timeText(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// durText is a duration Go style, rounded to the millisecond, or "-" when
// unset.
func durText(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	return d.AsDuration().Round(time.Millisecond).String()
}

// valueText shows a cache value: as it is when it is printable UTF-8
// text, Go-quoted otherwise.
func valueText(b []byte) string {
	s := string(b)
	if utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) < 0 {
		return s
	}
	return strconv.Quote(s)
}

// writeBreakerTable prints breakers as aligned columns.
func writeBreakerTable(w io.Writer, sts []*resiliencev1.BreakerStatus) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tFAILURES\tGENERATION\tPROBES\tOPENED AT\tNEXT PROBE AT\tPOLICY")
	for _, st := range sts {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n",
			st.GetName(), stateName(st.GetState()), st.GetConsecutiveFailures(), st.GetGeneration(),
			st.GetProbesInFlight(), timeText(st.GetOpenedAt()), timeText(st.GetNextProbeAt()), st.GetPolicy().GetName())
	}
	return tw.Flush()
}

// breakerRows is one breaker's status and policy as field/value rows.
func breakerRows(st *resiliencev1.BreakerStatus) []kv {
	rows := []kv{
		{"name", st.GetName()},
		{"state", stateName(st.GetState())},
		{"generation", strconv.FormatUint(st.GetGeneration(), 10)},
		{"consecutive failures", strconv.FormatInt(st.GetConsecutiveFailures(), 10)},
		{"probes in flight", strconv.FormatInt(st.GetProbesInFlight(), 10)},
		{"opened at", timeText(st.GetOpenedAt())},
		{"next probe at", timeText(st.GetNextProbeAt())},
	}
	p := st.GetPolicy()
	failureRate := p.GetMode() == "failure_rate"
	if failureRate {
		rows = append(rows,
			kv{"window calls", strconv.FormatInt(st.GetWindowCalls(), 10)},
			kv{"window failures", strconv.FormatInt(st.GetWindowFailures(), 10)})
	}
	rows = append(rows, kv{"degraded", strconv.FormatBool(st.GetDegraded())})
	if p == nil {
		return rows
	}
	rows = append(rows,
		kv{"policy", p.GetName()},
		kv{"  mode", p.GetMode()})
	if failureRate {
		rows = append(rows,
			kv{"  failure rate threshold", strconv.FormatFloat(p.GetFailureRateThreshold(), 'g', -1, 64)},
			kv{"  window", durText(p.GetWindow())},
			kv{"  minimum calls", strconv.FormatInt(p.GetMinimumCalls(), 10)})
	} else {
		rows = append(rows, kv{"  failure threshold", strconv.FormatInt(p.GetFailureThreshold(), 10)})
	}
	return append(rows,
		kv{"  recovery timeout", durText(p.GetRecoveryTimeout())},
		kv{"  half-open max calls", strconv.FormatInt(p.GetHalfOpenMaxCalls(), 10)},
		kv{"  success threshold", strconv.FormatInt(p.GetSuccessThreshold(), 10)},
		kv{"  probe timeout", durText(p.GetProbeTimeout())})
}

// eventLine is one breaker transition on one line (watch, table output):
//
//	2026-08-20T10:00:00.123Z  ado  CLOSED -> OPEN  reason=failure_threshold  generation=4
func eventLine(e *resiliencev1.BreakerEvent) string {
	return fmt.Sprintf("%s  %s  %s -> %s  reason=%s  generation=%d",
		timeText(e.GetAt()), e.GetBreaker(), stateName(e.GetFrom()), stateName(e.GetTo()), e.GetReason(), e.GetGeneration())
}

// acquireRows is a limit check's answer as field/value rows.
func acquireRows(key string, r *resiliencev1.AcquireResponse) []kv {
	rows := []kv{
		{"key", key},
		{"allowed", strconv.FormatBool(r.GetAllowed())},
		{"reason", reasonName(r.GetReason())},
		{"remaining", strconv.FormatInt(r.GetRemaining(), 10)},
		{"retry after", durText(r.GetRetryAfter())},
		{"reset after", durText(r.GetResetAfter())},
		{"degraded", strconv.FormatBool(r.GetDegraded())},
	}
	if r.GetLimitedBy() != "" {
		rows = append(rows, kv{"limited by", r.GetLimitedBy()})
	}
	if s := r.GetShadowReason(); s != resiliencev1.AcquireReason_ACQUIRE_REASON_UNSPECIFIED {
		rows = append(rows, kv{"shadow would be", reasonName(s)})
	}
	// Each limit's own answer, when there are several or one holds slots.
	if ls := r.GetLimits(); len(ls) > 1 || (len(ls) == 1 && ls[0].GetInFlight() > 0) {
		for i, l := range ls {
			v := fmt.Sprintf("%s: %s, remaining %d, in flight %d, retry after %s", l.GetKey(), reasonName(l.GetReason()), l.GetRemaining(), l.GetInFlight(), durText(l.GetRetryAfter()))
			if l.GetShadow() {
				v += " (shadow)"
			}
			rows = append(rows, kv{fmt.Sprintf("limit %d", i), v})
		}
	}
	return rows
}

// getRows is a cache read as field/value rows.
func getRows(key string, r *resiliencev1.GetResponse) []kv {
	rows := []kv{{"key", key}, {"found", strconv.FormatBool(r.GetFound())}}
	if r.GetFound() {
		ttl := "none"
		if r.GetTtl() != nil {
			ttl = durText(r.GetTtl())
		}
		rows = append(rows,
			kv{"value", valueText(r.GetValue())},
			kv{"size", fmt.Sprintf("%d bytes", len(r.GetValue()))},
			kv{"ttl", ttl})
	}
	return append(rows, kv{"degraded", strconv.FormatBool(r.GetDegraded())})
}

// statsRows is the cache statistics as field/value rows.
func statsRows(r *resiliencev1.GetStatsResponse) []kv {
	return []kv{
		{"hits", strconv.FormatInt(r.GetHits(), 10)},
		{"misses", strconv.FormatInt(r.GetMisses(), 10)},
		{"hit ratio", strconv.FormatFloat(r.GetHitRatio(), 'f', 3, 64)},
		{"sets", strconv.FormatInt(r.GetSets(), 10)},
		{"deletes", strconv.FormatInt(r.GetDeletes(), 10)},
		{"errors", strconv.FormatInt(r.GetErrors(), 10)},
		{"keys", strconv.FormatInt(r.GetKeys(), 10)},
		{"degraded", strconv.FormatBool(r.GetDegraded())},
	}
}
