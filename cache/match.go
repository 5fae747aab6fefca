package cache

import "fmt"

// Match reports whether key matches the glob pattern under the rules of the
// Redis MATCH option (stringmatchlen), byte by byte:
//
//   - "*" matches any sequence of bytes, including "/" and the empty one;
//   - "?" matches exactly one byte;
//   - "[abc]" matches one byte of the class, "[^abc]" one byte outside it,
//     "[a-z]" a byte range (reversed ranges are swapped), "\" escapes the
//     next byte inside a class, and a class left open runs to the end of
//     the pattern;
//   - "\x" matches the byte x literally; a trailing "\" matches "\".
//
// Unlike path.Match, "*" crosses "/" and a malformed pattern is never an
// error: it is read the way Redis reads it. Match is safe for concurrent use.
func Match(pattern, key string) bool {
	p, k := 0, 0
	starP, starK := -1, 0 // where to resume after the last "*"
	for k < len(key) {
		if p < len(pattern) && pattern[p] == '*' {
			for p < len(pattern) && pattern[p] == '*' {
				p++
			}
			if p == len(pattern) {
				return true
			}
			starP, starK = p, k
			continue
		}
		if p < len(pattern) {
			if ok, next := matchByte(pattern, p, key[k]); ok {
				p, k = next, k+1
				continue
			}
		}
		if starP < 0 {
			return false
		}
		// Let the last "*" swallow one more byte and retry. Every other
		// token matches exactly one byte, so this backtracking is complete.
		starK++
		p, k = starP, starK
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchByte matches the single-byte token at pattern[p] against c and
// returns whether it matched and where the next token starts.
func matchByte(pattern string, p int, c byte) (bool, int) {
	switch pattern[p] {
	case '?':
		return true, p + 1
	case '\\':
		if p+1 < len(pattern) {
			return pattern[p+1] == c, p + 2
		}
		return c == '\\', p + 1
	case '[':
		return matchClass(pattern, p+1, c)
	default:
		return pattern[p] == c, p + 1
	}
}

// matchClass matches c against the class whose body starts at pattern[i]
// (just after "["), following Redis: "^" negates, "\" escapes, "x-y" is a
// range when at least three bytes remain, "]" closes, the end of the pattern
// closes an open class.
func matchClass(pattern string, i int, c byte) (bool, int) {
	not := i < len(pattern) && pattern[i] == '^'
	if not {
		i++
	}
	match := false
	for i < len(pattern) {
		switch {
		case pattern[i] == '\\' && len(pattern)-i >= 2:
			if pattern[i+1] == c {
				match = true
			}
			i += 2
			continue
		case pattern[i] == ']':
			i++
			if not {
				return !match, i
			}
			return match, i
		case len(pattern)-i >= 3 && pattern[i+1] == '-':
			lo, hi := pattern[i], pattern[i+2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if c >= lo && c <= hi {
				match = true
			}
			i += 3
			continue
		}
		if pattern[i] == c {
			match = true
		}
		i++
	}
	if not {
		return !match, i
	}
	return match, i
}

// ValidatePattern reports whether pattern is a well-formed glob for
// DeletePattern: every "[" class is closed by "]" and the pattern does not
// end in a lone "\". Redis reads a malformed pattern without complaint (an
// open class runs to the end), so that "[" would match nothing, or far less
// than the caller meant; the Cache refuses it instead. The error is an
// *ArgumentError for the field "pattern" saying how to write the literal
// byte.
func ValidatePattern(pattern string) error {
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '\\':
			if i+1 == len(pattern) {
				return &ArgumentError{Field: "pattern", Reason: `pattern ends in a lone "\"; write "\\" for a literal backslash`}
			}
			i++
		case '[':
			open := i
			j := i + 1
			if j < len(pattern) && pattern[j] == '^' {
				j++
			}
			for ; j < len(pattern) && pattern[j] != ']'; j++ {
				if pattern[j] == '\\' {
					j++
				}
			}
			if j >= len(pattern) {
				return &ArgumentError{Field: "pattern", Reason: fmt.Sprintf(`pattern has a "[" at byte %d that is never closed by "]"; write "\[" for a literal bracket`, open)}
			}
			i = j
		}
	}
	return nil
}
