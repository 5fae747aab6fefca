package redisstore

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/topdeck/resilience/limiter"
)

// errorReply is an error value inside a reply.
type errorReply string

func (e errorReply) Error() string { return string(e) }

// replyFrom builds a reply of any shape go-redis may hand the decoder from
// data: each byte picks a value kind, followed by its bytes; arrays nest.
// It consumes at most len(data) bytes and nests at most depth levels.
func replyFrom(data []byte, depth int) (any, []byte) {
	if len(data) == 0 {
		return nil, nil
	}
	kind, data := data[0], data[1:]
	next8 := func() uint64 {
		var b [8]byte
		n := copy(b[:], data)
		data = data[n:]
		return binary.LittleEndian.Uint64(b[:])
	}
	switch kind % 8 {
	case 0:
		return int64(next8()), data
	case 1:
		// Small integers are the common case: 0..15, and -1.
		return int64(kind/8%17) - 1, data
	case 2:
		n := min(int(kind/8), len(data))
		return string(data[:n]), data[n:]
	case 3:
		return math.Float64frombits(next8()), data
	case 4:
		// An error element in an array, as go-redis gives it.
		return errorReply("ERR " + string(data[:min(len(data), 4)])), data[min(len(data), 4):]
	case 5:
		return nil, data
	case 6:
		return kind%16 == 6, data
	default:
		n := int(kind / 8 % 12)
		if depth <= 0 {
			return []any{}, data
		}
		vals := make([]any, 0, n)
		for range n {
			var v any
			v, data = replyFrom(data, depth-1)
			vals = append(vals, v)
		}
		return vals, data
	}
}

// FuzzDecodeReply checks that the decoders of gcra.lua's and cancel.lua's
// replies (one decision's, and one call's to several) never panic on any reply shape, that every error wraps
// limiter.ErrStoreUnavailable, and that a decoded Result is within bounds.
// The seed corpus is in testdata/fuzz/FuzzDecodeReply.
func FuzzDecodeReply(f *testing.F) {
	// A well-formed reservation reply: nine small-integer or 8-byte values.
	f.Add([]byte{7 + 8*9, 9, 1 + 8*3, 1 + 8*5, 1 + 8*1, 1 + 8*2, 1 + 8*4, 1 + 8*1, 1 + 8*1, 1 + 8*1})
	f.Add([]byte{7 + 8*5, 1, 1, 1, 1, 1})
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{2 + 8*3, 'a', 'b', 'c'})
	f.Add([]byte{4, 'O', 'O', 'M', ' '})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, _ := replyFrom(data, 4)
		c := &call{mode: modeTake, key: "k"}
		res, err := decodeReply(c, v, nil)
		if err != nil {
			if !errors.Is(err, limiter.ErrStoreUnavailable) {
				t.Fatalf("decodeReply(%#v) error %v does not wrap ErrStoreUnavailable", v, err)
			}
		} else {
			if res.Remaining < 0 || res.RetryAfter < 0 || res.ResetAfter < 0 || res.Wait < 0 || res.Reservation.IsZero() == (res.Wait > 0) {
				t.Fatalf("decodeReply(%#v) = %+v: out of bounds", v, res)
			}
		}
		if _, err := decodeReply(c, v, errors.New("network")); !errors.Is(err, limiter.ErrStoreUnavailable) {
			t.Fatalf("decodeReply with an error: %v does not wrap ErrStoreUnavailable", err)
		}
		// The same value as the reply of one script call to two decisions
		// (gcra.lua answers an array of one reply each): every call gets an
		// error wrapping ErrStoreUnavailable or a Result within bounds.
		pair := []*call{{mode: modeTake, key: "a"}, {mode: modePeek, key: "b"}}
		decodeReplies(pair, v, nil)
		for _, c := range pair {
			if c.err != nil && !errors.Is(c.err, limiter.ErrStoreUnavailable) {
				t.Fatalf("decodeReplies(%#v): error %v does not wrap ErrStoreUnavailable", v, c.err)
			}
			if c.err == nil && (c.res.Remaining < 0 || c.res.Reservation.IsZero() == (c.res.Wait > 0)) {
				t.Fatalf("decodeReplies(%#v) = %+v: out of bounds", v, c.res)
			}
		}
		if ok, err := decodeCancel(v); err != nil && ok {
			t.Fatalf("decodeCancel(%#v) = (true, %v)", v, err)
		}
	})
}
