// Package defaults fills the unset fields of the module's option structs
// (the withDefaults methods of retry.Config, redisconn.Timeouts and the
// like). Zero-means-default fields take cmp.Or; Positive is for the fields
// whose zero or negative value means "unset".
package defaults

// number is what Positive compares with zero: integers, floats and the
// types made of them (time.Duration).
type number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~float32 | ~float64
}

// Positive returns v when it is greater than zero, d otherwise (for a
// float NaN, d as well).
func Positive[T number](v, d T) T {
	if v > 0 {
		return v
	}
	return d
}
