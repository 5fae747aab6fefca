package redisstore

import (
	"testing"

	"github.com/topdeck/resilience/breaker"
)

// replyFromBytes builds a script reply of any shape, as go-redis decodes one
// (int64, string, nil, []any, nested), from fuzz input: a tag byte (mod 4:
// nil, integer from the next 8 bytes, string of the length in the next byte,
// array of the count in the next byte mod 16) per value, depth at most 4.
func replyFromBytes(b []byte) any {
	v, _ := parseReply(b, 0)
	return v
}

func parseReply(b []byte, depth int) (any, []byte) {
	if len(b) == 0 {
		return nil, b
	}
	tag, b := b[0], b[1:]
	switch tag % 4 {
	case 0:
		return nil, b
	case 1:
		var n int64
		k := min(8, len(b))
		for _, c := range b[:k] {
			n = n<<8 | int64(c)
		}
		return n, b[k:]
	case 2:
		if len(b) == 0 {
			return "", b
		}
		l := min(int(b[0]), len(b)-1)
		return string(b[1 : 1+l]), b[1+l:]
	default:
		if len(b) == 0 || depth >= 4 {
			return []any{}, b
		}
		n := int(b[0]) % 16
		b = b[1:]
		out := make([]any, 0, n)
		for range n {
			var v any
			v, b = parseReply(b, depth+1)
			out = append(out, v)
		}
		return out, b
	}
}

// encodeReply is the inverse of replyFromBytes, for seeds.
func encodeReply(v any) []byte {
	switch x := v.(type) {
	case nil:
		return []byte{0}
	case int64:
		out := []byte{1}
		for i := 7; i >= 0; i-- {
			out = append(out, byte(uint64(x)>>(8*i)))
		}
		return out
	case string:
		return append([]byte{2, byte(len(x))}, x...)
	case []any:
		out := []byte{3, byte(len(x))}
		for _, e := range x {
			out = append(out, encodeReply(e)...)
		}
		return out
	}
	panic("encodeReply: unsupported type")
}

func TestEncodeReplyRoundTrip(t *testing.T) {
	v := []any{int64(1), int64(-2), "gen", nil, []any{"x"}}
	got := replyFromBytes(encodeReply(v))
	a, ok := got.([]any)
	if !ok || len(a) != 5 || a[0] != int64(1) || a[1] != int64(-2) || a[2] != "gen" || a[3] != nil {
		t.Fatalf("round trip: got %#v, want %#v", got, v)
	}
}

// The decoders of script replies never panic, whatever the reply's shape:
// an unexpected reply is an error (the store reports ErrStoreUnavailable).
func FuzzDecodeReply(f *testing.F) {
	seeds := []any{
		[]any{int64(1), int64(0), "1930367167123456", "", "0", "0", "1930367167123456"},       // allow, CLOSED
		[]any{int64(1), int64(2), "7", "7.1", "0", "1930367172123456", "1930367167123456"},    // allow, probe
		[]any{int64(0), int64(1), "7", "", "30000000", "0", "1930367167123456"},               // allow, OPEN
		[]any{int64(1), int64(0), "8", ""},                                                    // report
		[]any{int64(0), int64(0), "8", "stale_generation"},                                    // report, ignored
		[]any{int64(1), "9", "0", "0", "0", int64(0), "0", "0", "0", "1930367167123456", nil}, // status, no cfg
		[]any{int64(1), "9", "0", "1930367167123456", "0", int64(0), "1930367197123456", "0", "0", "1930367167123456", "0,3,0.5,60000000,20,30000000,1,1,5000000"},
		[]any{int64(7), "-1", "x"},
		[]any{},
		"OK",
		int64(3),
		nil,
	}
	for _, s := range seeds {
		f.Add(encodeReply(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v := replyFromBytes(data)
		if a, err := decodeAdmission(v); err == nil && !a.State.Valid() {
			t.Fatalf("decodeAdmission(%#v): state %v accepted", v, a.State)
		}
		if r, err := decodeReport(v); err == nil && !r.State.Valid() {
			t.Fatalf("decodeReport(%#v): state %v accepted", v, r.State)
		}
		if st, _, err := decodeStatus("b", v); err == nil && !st.State.Valid() {
			t.Fatalf("decodeStatus(%#v): state %v accepted", v, st.State)
		}
		if s, ok := v.(string); ok {
			_, _ = decodeSettings(s)
		}
		_, _ = decodeSettings(string(data))
	})
}

// DecodeEvent never panics, and an event it accepts has valid states.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"n":"svc","f":0,"t":1,"g":1930367167123457,"a":1930367167123456,"r":"reset"}`,
		`{"n":"a}b","f":1,"t":2,"g":2,"a":0,"r":"recovery_timeout"}`,
		`{"n":"x","f":3,"t":1,"g":2,"a":0,"r":"reset"}`,
		`{"n":"x","f":0,"t":1,"g":-1,"a":0,"r":"reset"}`,
		`{"n":1}`,
		`{}`,
		`null`,
		`[`,
		``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		e, err := DecodeEvent(payload)
		if err == nil && (!e.From.Valid() || !e.To.Valid()) {
			t.Fatalf("DecodeEvent(%q): got %v with an invalid state", payload, e)
		}
		if err != nil && e != (breaker.Event{}) {
			t.Fatalf("DecodeEvent(%q): error %v with a non-zero event %v", payload, err, e)
		}
	})
}
