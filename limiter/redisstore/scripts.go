package redisstore

import (
	"embed"
	"regexp"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/topdeck/resilience/internal/redisscript"
)

// luaFiles are the package's Lua sources: lib.lua, the helpers the scripts
// share, and one file a script.
//
//go:embed *.lua
var luaFiles embed.FS

// luaSource is the Lua file name of luaFiles.
func luaSource(name string) string {
	b, err := luaFiles.ReadFile(name)
	if err != nil {
		panic("redisstore: " + err.Error()) // a file named below is missing: a build mistake
	}
	return string(b)
}

// libSource holds the helpers the scripts share; see lib.lua.
var libSource = luaSource("lib.lua")

// The scripts, each with the functions of lib.lua it calls in front of it
// (see withLib). Those run in pipelines of EVALSHA go through redisscript,
// which loads a script again where Redis has lost it; the others run alone
// through go-redis's Script.Run, which does the same.
var (
	gcraScript     = redisscript.New(withLib(luaSource("gcra.lua")))     // decisions, one key each
	multiScript    = redisscript.New(withLib(luaSource("multi.lua")))    // several limits at once
	givebackScript = redisscript.New(withLib(luaSource("giveback.lua"))) // one slot's charges back
	pauseScript    = redisscript.New(withLib(luaSource("pause.lua")))    // an upstream's answer
	releaseScript  = redisscript.New(withLib(luaSource("release.lua")))  // slots back
	cancelScript   = redis.NewScript(withLib(luaSource("cancel.lua")))   // a reservation back
	leaseScript    = redis.NewScript(withLib(luaSource("lease.lua")))    // tokens lent for lease mode
)

// libFuncs are lib.lua's functions, in the file's order.
var libFuncs = parseLib(libSource)

// libFunc is one function of lib.lua.
type libFunc struct {
	name  string         // what the scripts call it by
	code  string         // its definition on one line (see oneLine)
	calls *regexp.Regexp // matches a call of it
}

// withLib returns the script src (one .lua file of this package) with the
// functions of lib.lua that it calls, and those they call, in front of it:
// only those, since each is a closure that Redis makes again on every run of
// the script. They are put on src's first line (a comment), so that line N
// of src is line N of what Redis runs, and the line numbers in Redis's error
// messages ("user_script:N") are src's own; an error raised inside the
// library says line 1.
func withLib(src string) string {
	// A function calls only functions defined before it: walk back from
	// the last, so that every caller is decided before its callees.
	need := make([]bool, len(libFuncs))
	for i := len(libFuncs) - 1; i >= 0; i-- {
		need[i] = libFuncs[i].calls.MatchString(src)
		for j := i + 1; j < len(libFuncs) && !need[i]; j++ {
			need[i] = need[j] && libFuncs[i].calls.MatchString(libFuncs[j].code)
		}
	}
	var b strings.Builder
	for i, f := range libFuncs {
		if need[i] {
			b.WriteString(f.code)
			b.WriteString(" ")
		}
	}
	b.WriteString(src)
	return b.String()
}

// parseLib returns the functions of lib, Lua whose top-level code is only
// "local function name(...)" definitions, each ending with an "end" line
// that is not indented; what stands between them (comments, blank lines) is
// left out.
func parseLib(lib string) []libFunc {
	var funcs []libFunc
	var cur []string
	for line := range strings.Lines(lib) {
		if name, ok := strings.CutPrefix(line, "local function "); ok && cur == nil {
			name, _, _ = strings.Cut(name, "(")
			funcs = append(funcs, libFunc{name: name, calls: regexp.MustCompile(`\b` + name + `\(`)})
			cur = []string{}
		}
		if cur == nil {
			continue
		}
		cur = append(cur, line)
		if strings.TrimRight(line, "\n") == "end" {
			funcs[len(funcs)-1].code = oneLine(strings.Join(cur, ""))
			cur = nil
		}
	}
	return funcs
}

// oneLine returns the code lines of the Lua source lua, trimmed, joined by
// spaces; lines that are blank or only a comment are left out. It is sound
// for code without comments after code and without strings that span lines,
// as lib.lua is written (TestLibLine checks it).
func oneLine(lua string) string {
	var code []string
	for line := range strings.Lines(lua) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "--") {
			continue
		}
		code = append(code, line)
	}
	return strings.Join(code, " ")
}
