// Package fanout delivers values to any number of watchers, each a buffered
// channel that a slow reader loses instead of holding the publisher back.
// The breaker stores' Hub and a Cache's invalidation watchers are built on
// its Set.
package fanout
