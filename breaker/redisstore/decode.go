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

// stateAt decodes a[i], a state, and a[i+1], its generation.
func stateAt(a []any, i int) (breaker.State, uint64, error) {
	st, err := asState(a[i])
	if err != nil {
		return 0, 0, err
	}
	gen, err := asUint(a[i+1])
	if err != nil {
		return 0, 0, err
	}
	return st, gen, nil
}

// ints decodes the elements of a at the given indexes as integers.
func ints(a []any, idx ...int) ([]int64, error) {
	out := make([]int64, len(idx))
	for i, j := range idx {
		n, err := asInt(a[j])
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", j, err)
		}
		out[i] = n
	}
	return out, nil
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
	a, err := asArray(v, 7)
	if err != nil {
		return breaker.Admission{}, err
	}
	st, gen, err := stateAt(a, 1)
	if err != nil {
		return breaker.Admission{}, err
	}
	permit, err := asString(a[3])
	if err != nil {
		return breaker.Admission{}, err
	}
	n, err := ints(a, 0, 4, 5)
	if err != nil {
		return breaker.Admission{}, err
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
	a, err := asArray(v, 4)
	if err != nil {
		return breaker.ReportResult{}, err
	}
	counted, err := asInt(a[0])
	if err != nil {
		return breaker.ReportResult{}, err
	}
	st, gen, err := stateAt(a, 1)
	if err != nil {
		return breaker.ReportResult{}, err
	}
	reason, err := asString(a[3])
	if err != nil {
		return breaker.ReportResult{}, err
	}
	return breaker.ReportResult{Ignored: counted == 0, IgnoredReason: reason, State: st, Generation: gen}, nil
}

// decodeStatus reads lib.lua's status array. It returns the stored settings
// string as well.
func decodeStatus(name string, v any) (breaker.Status, string, error) {
	a, err := asArray(v, 11)
	if err != nil {
		return breaker.Status{}, "", err
	}
	st, gen, err := stateAt(a, 0)
	if err != nil {
		return breaker.Status{}, "", err
	}
	n, err := ints(a, 2, 3, 4, 5, 6, 7, 8)
	if err != nil {
		return breaker.Status{}, "", err
	}
	var cfg string
	if a[10] != nil { // a Lua false (no stored cfg) arrives as nil
		if cfg, err = asString(a[10]); err != nil {
			return breaker.Status{}, "", err
		}
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
