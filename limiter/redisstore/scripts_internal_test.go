package redisstore

import (
	"context"
	"strings"
	"testing"

	"github.com/topdeck/resilience/internal/redisscript"
	"github.com/topdeck/resilience/internal/redistest"
)

// scriptSources are the package's scripts (every Lua file but lib.lua),
// each of which withLib puts lib.lua in front of.
func scriptSources(t *testing.T) map[string]string {
	files, err := luaFiles.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		if f.Name() != "lib.lua" {
			out[f.Name()] = luaSource(f.Name())
		}
	}
	if len(out) != 7 {
		t.Fatalf("%d scripts besides lib.lua, want 7: %v", len(out), out)
	}
	return out
}

// TestLibLine checks that lib.lua can be joined into one line (no comment
// after code, no string across lines) and holds only local functions, that
// withLib keeps every script's line numbers, and that it puts in front of
// gcra.lua only what gcra.lua calls.
func TestLibLine(t *testing.T) {
	for i, line := range strings.Split(libSource, "\n") {
		code := strings.TrimSpace(line)
		if code == "" || strings.HasPrefix(code, "--") {
			continue
		}
		if strings.Contains(code, "--") || strings.Contains(code, "[[") || strings.Count(code, `"`)%2 != 0 {
			t.Errorf("lib.lua:%d: %q: want no comment after code and no string across lines", i+1, line)
		}
	}
	var all []string
	for _, f := range libFuncs {
		all = append(all, f.code)
	}
	if got, want := strings.Join(all, " "), oneLine(libSource); got != want {
		t.Errorf("lib.lua's functions are\n%s\nwant all of its code,\n%s", got, want)
	}
	for name, src := range scriptSources(t) {
		if !strings.HasPrefix(src, "-- "+name+":") {
			t.Errorf("%s: first line %q, want the header comment", name, strings.SplitN(src, "\n", 2)[0])
		}
		if got, want := strings.Count(withLib(src), "\n"), strings.Count(src, "\n"); got != want {
			t.Errorf("withLib(%s) has %d lines, want %d", name, got, want)
		}
	}
	code := map[string]string{}
	for _, f := range libFuncs {
		code[f.name] = f.code
	}
	gcra := luaSource("gcra.lua")
	if got, want := withLib(gcra), code["floordiv"]+" "+code["ceildiv"]+" "+code["bucket_debt"]+" "+code["bucket_value"]+" "+code["set_bucket"]+" "+gcra; got != want {
		t.Errorf("withLib(gcra.lua) starts %.200q, want only floordiv, ceildiv, bucket_debt, bucket_value and set_bucket in front", got)
	}
}

// TestLibLineNumbers checks on a real Redis that a script's runtime error
// names the script's own line, and that every script compiles with the
// library in front of it.
func TestLibLineNumbers(t *testing.T) {
	client := redistest.Start(t).Client()
	ctx := context.Background()
	bad := redisscript.New(withLib("-- bad.lua: fails on line 3.\nlocal x = now_us(\"1\")\nreturn x + nil\n"))
	err := bad.Run(ctx, client, nil).Err()
	if err == nil || !strings.Contains(err.Error(), "user_script:3:") {
		t.Errorf("error = %v, want one at user_script:3", err)
	}
	for name, src := range scriptSources(t) {
		if err := redisscript.New(withLib(src)).Load(ctx, client).Err(); err != nil {
			t.Errorf("SCRIPT LOAD %s: %v", name, err)
		}
	}
}
