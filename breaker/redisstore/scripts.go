package redisstore

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

// lib.lua holds helpers shared by the scripts; it is prepended to each one.
//
//go:embed lua/lib.lua
var libLua string

//go:embed lua/allow.lua
var allowLua string

//go:embed lua/report.lua
var reportLua string

//go:embed lua/reset.lua
var resetLua string

//go:embed lua/status.lua
var statusLua string

// The scripts, run with Script.Run (EVALSHA with an EVAL fallback).
var (
	allowScript  = redis.NewScript(libLua + "\n" + allowLua)
	reportScript = redis.NewScript(libLua + "\n" + reportLua)
	resetScript  = redis.NewScript(libLua + "\n" + resetLua)
	statusScript = redis.NewScript(libLua + "\n" + statusLua)
)
