package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	m := NewMain()
	code := m.ExitCode(m.Run(ctx, os.Args[1:]))
	stop()
	os.Exit(code)
}
