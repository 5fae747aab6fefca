// Package clocktest provides a manual clock for tests: time moves only when
// the test says so.
package clocktest

import (
	"sync"
	"time"
)

// Clock is a manual clock. The zero value is not usable; use New. It is safe
// for concurrent use.
type Clock struct {
	mu  sync.Mutex // protects now
	now time.Time
}

// New returns a clock reading start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
