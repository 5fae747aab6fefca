// Package redisscript runs the stores' Lua scripts on Redis: one EVALSHA per
// decision, alone or many in one pipeline, and the recovery from NOSCRIPT
// (Redis restarted, failed over to a node that never loaded the script, or
// SCRIPT FLUSH) that every store needs.
//
// It is the one place that knows what a NOSCRIPT reply looks like
// ([IsNoScript]) and how a pipeline recovers from it ([Script.Exec]): the
// limiter's batcher, the breaker's List and any other pipelined script use
// it, so their recovery cannot drift apart.
package redisscript
