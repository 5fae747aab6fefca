package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/topdeck/resilience/config"
)

// reloader reloads the configuration file on SIGHUP and when its content
// changes (checked every interval, which also catches a Kubernetes
// ConfigMap's symlink swap). A reload is atomic: a file that does not load
// is rejected with a log line and the running configuration stays.
type reloader struct {
	path     string
	interval time.Duration
	log      *slog.Logger
	// apply puts a loaded configuration in force; an error rejects it.
	apply func(*config.Config) error
	// result is told the outcome of every attempt (nil: in force), for the
	// metrics and the audit trail.
	result func(err error)

	last [sha256.Size]byte // content in force
}

// newReloader returns a reloader for path whose content in force is data.
func newReloader(path string, data []byte, log *slog.Logger, apply func(*config.Config) error, result func(error)) *reloader {
	return &reloader{path: path, interval: time.Second, log: log, apply: apply, result: result, last: sha256.Sum256(data)}
}

// Run watches until ctx is done.
func (r *reloader) Run(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.reload(true)
		case <-t.C:
			r.reload(false)
		}
	}
}

// reload loads the file if forced or if its content changed.
func (r *reloader) reload(forced bool) {
	data, err := os.ReadFile(r.path)
	if err != nil {
		if forced {
			r.fail(err)
		}
		return // a file being replaced may be briefly missing
	}
	sum := sha256.Sum256(data)
	if !forced && bytes.Equal(sum[:], r.last[:]) {
		return
	}
	r.last = sum // a bad file is reported once, not every interval
	cfg, err := config.Parse(r.path, data)
	if err == nil {
		err = r.apply(cfg)
	}
	if err != nil {
		r.fail(err)
		return
	}
	r.result(nil)
	r.log.Info("configuration reloaded", "config", r.path, "limits", len(cfg.Limits), "breakers", len(cfg.Breakers))
}

func (r *reloader) fail(err error) {
	r.result(err)
	r.log.Error("configuration reload rejected; the running configuration stays", "config", r.path, "error", err.Error())
}
