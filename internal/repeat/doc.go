// Package repeat runs a function again and again, with a pause after each
// run, until a context ends: the background loops of the service and of the
// SDK (following a feed or a stream again after it broke, pruning).
package repeat
