// Package enum names the values of the module's small integer enums (the
// String methods of breaker.Mode, breaker.Outcome, admission.Reason and
// the like), so that each is a table of names and one lookup.
package enum

import "strconv"

// Name returns names[v], or "<typ>(<v>)" (for example "Mode(7)") when v has
// no name in names: out of range, or an empty entry.
func Name[T ~uint8 | ~int](typ string, v T, names []string) string {
	if v >= 0 && int(v) < len(names) && names[v] != "" {
		return names[v]
	}
	return typ + "(" + strconv.Itoa(int(v)) + ")"
}
