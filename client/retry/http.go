package retry

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ParseRetryAfter parses an HTTP Retry-After value: a number of seconds
// ("120") or an HTTP date ("Wed, 21 Oct 2015 07:28:00 GMT"), read relative to
// now. A date in the past gives 0, true. An empty or malformed value gives
// 0, false.
func ParseRetryAfter(value string, now time.Time) (time.Duration, bool) {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(value, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(value)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// maxRetryAfter bounds parsed retry-afters (a day), so that an absurd header
// cannot overflow a duration.
const maxRetryAfter = 24 * time.Hour

// HTTPError is the error ResponseError makes of a failed HTTP response.
// RetryAfter (a method, so Do honours it) is the response's Retry-After.
type HTTPError struct {
	// StatusCode is the response's status code.
	StatusCode int
	// Status is the response's status line, e.g. "503 Service Unavailable".
	Status string
	// Delay is the parsed Retry-After (0 when absent).
	Delay time.Duration
}

// Error returns "http status 503 Service Unavailable".
func (e *HTTPError) Error() string { return "http status " + e.Status }

// RetryAfter returns Delay.
func (e *HTTPError) RetryAfter() time.Duration { return e.Delay }

// ResponseError turns an HTTP response into an error for Do: nil for a status
// below 400; a permanent error for a 4xx other than 408 (Request Timeout),
// 425 (Too Early) and 429 (Too Many Requests); otherwise a retryable
// *HTTPError carrying the response's Retry-After, read relative to now. It
// does not read or close the body.
func ResponseError(resp *http.Response, now time.Time) error {
	if resp == nil || resp.StatusCode < 400 {
		return nil
	}
	st := resp.Status
	if st == "" {
		st = fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	e := &HTTPError{StatusCode: resp.StatusCode, Status: st}
	e.Delay, _ = ParseRetryAfter(resp.Header.Get("Retry-After"), now)
	switch resp.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return e
	}
	if resp.StatusCode < 500 {
		return Permanent(e)
	}
	return e
}
