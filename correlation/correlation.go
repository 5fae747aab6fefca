// Package correlation carries a correlation id through a context and across
// gRPC calls in the "x-correlation-id" metadata key, so that the log lines of
// one logical operation can be found together in every service it touches.
//
// Its functions are safe for concurrent use.
package correlation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

// Header is the gRPC metadata key (and HTTP header) that carries the id.
const Header = "x-correlation-id"

// MaxLen is the longest id accepted from a caller; longer ids are replaced.
const MaxLen = 128

type ctxKey struct{}

// NewContext returns a copy of ctx that carries id.
func NewContext(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the id carried by ctx, or "" when there is none.
func FromContext(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// New returns a fresh random id: 32 lowercase hex digits.
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Rule says, for a caller whose id was refused, what Valid accepts.
const Rule = "x-correlation-id must be 1 to 128 printable ASCII characters without spaces; a fresh id was used instead"

// Valid reports whether id can be used as it is: 1 to MaxLen printable ASCII
// characters without spaces. Anything else (control characters that could
// forge log lines, huge values) is replaced by a fresh id.
func Valid(id string) bool {
	if id == "" || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}
