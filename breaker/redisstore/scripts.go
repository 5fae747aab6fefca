package redisstore

import (
	_ "embed"

	"github.com/topdeck/resilience/internal/redisscript"
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

// The scripts, run with Run (EVALSHA with an EVAL fallback) or, many in a pipeline, with Exec.
var (
	allowScript  = redisscript.New(libLua + "\n" + allowLua)
	reportScript = redisscript.New(libLua + "\n" + reportLua)
	resetScript  = redisscript.New(libLua + "\n" + resetLua)
	statusScript = redisscript.New(libLua + "\n" + statusLua)
)
