package redisstore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/topdeck/resilience/breaker"
)

// errReply marks a reply of an unexpected shape.
var errReply = errors.New("redisstore: unexpected script reply")

// asArray checks that v is an array of exactly n elements.
func asArray(v any, n int) ([]any, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: got %T, want array", errReply, v)
	}
	if len(a) != n {
		return nil, fmt.Errorf("%w: got %d elements, want %d", errReply, len(a), n)
	}
	return a, nil
}

// asInt reads an integer reply or a decimal string.
func asInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %q is not an integer", errReply, x)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%w: got %T, want integer", errReply, v)
}

// asUint reads a non-negative integer.
func asUint(v any) (uint64, error) {
	n, err := asInt(v)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, fmt.Errorf("%w: got %d, want a non-negative integer", errReply, n)
	}
	return uint64(n), nil
}

// asString reads a bulk string reply.
func asString(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%w: got %T, want string", errReply, v)
	}
	return s, nil
}

// asState reads a state number.
func asState(v any) (breaker.State, error) {
	n, err := asInt(v)
	if err != nil {
		return 0, err
	}
	st := breaker.State(n)
	if n < 0 || !st.Valid() {
		return 0, fmt.Errorf("%w: state %d", errReply, n)
	}
	return st, nil
}

// reply reads the elements of a script's reply array, keeping the first
// error: once a read has failed (or the reply was not an array of the
// length asked for), every later read reads nothing and returns zero
// values. A decoder reads its elements in turn and then checks err once
// (what the reads returned is of no use when it is set).
type reply struct {
	a   []any
	err error
}

// readReply starts reading v, which must be an array of exactly n elements.
func readReply(v any, n int) *reply {
	a, err := asArray(v, n)
	return &reply{a: a, err: err}
}

// read decodes a[i] with as, unless r has failed already.
func read[T any](r *reply, i int, as func(any) (T, error)) T {
	var v T
	if r.err == nil {
		v, r.err = as(r.a[i])
	}
	return v
}

// state decodes a[i], a state, and a[i+1], its generation.
func (r *reply) state(i int) (breaker.State, uint64) {
	return read(r, i, asState), read(r, i+1, asUint)
}

// integers decodes the elements at the given indexes as integers; an
// error names the element.
func (r *reply) integers(idx ...int) []int64 {
	out := make([]int64, len(idx))
	for i, j := range idx {
		if r.err != nil {
			break
		}
		if out[i] = read(r, j, asInt); r.err != nil {
			r.err = fmt.Errorf("element %d: %w", j, r.err)
		}
	}
	return out
}

// optionalText decodes a[i] as a string, "" for a nil element (a Lua
// false).
func (r *reply) optionalText(i int) string {
	if r.err == nil && r.a[i] == nil {
		return ""
	}
	return read(r, i, asString)
}

func usTime(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

// encodeSettings writes the settings string of lib.lua (defaults applied).
func encodeSettings(s breaker.Settings) string {
	return fmt.Sprintf("%d,%d,%s,%d,%d,%d,%d,%d,%d",
		s.Mode, s.FailureThreshold, strconv.FormatFloat(s.FailureRateThreshold, 'g', -1, 64),
		s.Window.Microseconds(), s.MinimumCalls, s.RecoveryTimeout.Microseconds(),
		s.HalfOpenMaxCalls, s.SuccessThreshold, s.ProbeTimeout.Microseconds())
}

// decodeSettings reads a settings string; "" gives the zero Settings.
func decodeSettings(v string) (breaker.Settings, error) {
	if v == "" {
		return breaker.Settings{}, nil
	}
	f := strings.Split(v, ",")
	if len(f) != 9 {
		return breaker.Settings{}, fmt.Errorf("%w: settings %q", errReply, v)
	}
	n := make([]int64, 9)
	var rate float64
	for i, x := range f {
		var err error
		if i == 2 {
			rate, err = strconv.ParseFloat(x, 64)
		} else {
			n[i], err = strconv.ParseInt(x, 10, 64)
		}
		if err != nil {
			return breaker.Settings{}, fmt.Errorf("%w: settings %q", errReply, v)
		}
	}
	return breaker.Settings{
		Mode:                 breaker.Mode(n[0]),
		FailureThreshold:     int(n[1]),
		FailureRateThreshold: rate,
		Window:               time.Duration(n[3]) * time.Microsecond,
		MinimumCalls:         int(n[4]),
		RecoveryTimeout:      time.Duration(n[5]) * time.Microsecond,
		HalfOpenMaxCalls:     int(n[6]),
		SuccessThreshold:     int(n[7]),
		ProbeTimeout:         time.Duration(n[8]) * time.Microsecond,
	}, nil
}

// decodeAdmission reads allow.lua's reply.
func decodeAdmission(v any) (breaker.Admission, error) {
	r := readReply(v, 7)
	st, gen := r.state(1)
	permit := read(r, 3, asString)
	n := r.integers(0, 4, 5)
	if r.err != nil {
		return breaker.Admission{}, r.err
	}
	return breaker.Admission{
		Allowed:       n[0] == 1,
		State:         st,
		Generation:    gen,
		PermitID:      permit,
		RetryAfter:    time.Duration(n[1]) * time.Microsecond,
		ProbeDeadline: usTime(n[2]),
	}, nil
}

// decodeReport reads report.lua's reply.
func decodeReport(v any) (breaker.ReportResult, error) {
	r := readReply(v, 4)
	counted := read(r, 0, asInt)
	st, gen := r.state(1)
	reason := read(r, 3, asString)
	if r.err != nil {
		return breaker.ReportResult{}, r.err
	}
	return breaker.ReportResult{Ignored: counted == 0, IgnoredReason: reason, State: st, Generation: gen}, nil
}

// decodeStatus reads lib.lua's status array. It returns the stored settings
// string as well.
func decodeStatus(name string, v any) (breaker.Status, string, error) {
	r := readReply(v, 11)
	st, gen := r.state(0)
	n := r.integers(2, 3, 4, 5, 6, 7, 8)
	cfg := r.optionalText(10) // a Lua false (no stored cfg) arrives as nil
	if r.err != nil {
		return breaker.Status{}, "", r.err
	}
	return breaker.Status{
		Name:                name,
		State:               st,
		Generation:          gen,
		ConsecutiveFailures: n[0],
		OpenedAt:            usTime(n[1]),
		ProbeSuccesses:      n[2],
		ProbesInFlight:      n[3],
		NextProbeAt:         usTime(n[4]),
		WindowCalls:         n[5],
		WindowFailures:      n[6],
	}, cfg, nil
}
