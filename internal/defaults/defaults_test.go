package defaults

import (
	"math"
	"testing"
	"time"
)

func TestPositive(t *testing.T) {
	for _, tt := range []struct{ v, d, want time.Duration }{
		{time.Second, time.Minute, time.Second},
		{1, time.Minute, 1},
		{0, time.Minute, time.Minute},
		{-time.Second, time.Minute, time.Minute},
	} {
		if got := Positive(tt.v, tt.d); got != tt.want {
			t.Errorf("Positive(%v, %v) = %v, want %v", tt.v, tt.d, got, tt.want)
		}
	}
	if got := Positive(math.NaN(), 2.5); got != 2.5 {
		t.Errorf("Positive(NaN, 2.5) = %v, want 2.5", got)
	}
	if got := Positive(-3, 7); got != 7 {
		t.Errorf("Positive(-3, 7) = %v, want 7", got)
	}
}
