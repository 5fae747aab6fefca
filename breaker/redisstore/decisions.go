package redisstore

import (
	"context"
	"strconv"

	"github.com/topdeck/resilience/breaker"
	"github.com/topdeck/resilience/internal/redisscript"
)

// Allow implements breaker.Store.
func (s *Store) Allow(ctx context.Context, name string, st breaker.Settings) (breaker.Admission, error) {
	st, err := breaker.Prepare(name, st)
	if err != nil {
		return breaker.Admission{}, err
	}
	if err := s.register(ctx, name); err != nil {
		return breaker.Admission{}, s.fail("allow", name, err)
	}
	return runScript(ctx, s, "allow", name, allowScript, decodeAdmission, s.commonArgs(name, st)...)
}

// Report implements breaker.Store.
func (s *Store) Report(ctx context.Context, name string, st breaker.Settings, o breaker.Outcome, generation uint64, permitID string) (breaker.ReportResult, error) {
	st, err := breaker.Prepare(name, st)
	if err != nil {
		return breaker.ReportResult{}, err
	}
	if !o.Valid() {
		return breaker.ReportResult{}, breaker.InvalidOutcome(o)
	}
	if err := s.register(ctx, name); err != nil {
		return breaker.ReportResult{}, s.fail("report", name, err)
	}
	if _, _, ok := breaker.ParsePermitID(permitID); permitID != "" && !ok {
		permitID = "!" // malformed: report.lua ignores it (no_permit)
	}
	args := append(s.commonArgs(name, st), int(o), strconv.FormatUint(generation, 10), permitID)
	return runScript(ctx, s, "report", name, reportScript, decodeReport, args...)
}

// Status implements breaker.Store. It writes nothing.
func (s *Store) Status(ctx context.Context, name string, st breaker.Settings) (breaker.Status, error) {
	st, err := breaker.Prepare(name, st)
	if err != nil {
		return breaker.Status{}, err
	}
	return s.runStatus(ctx, "status", name, st, statusScript, s.commonArgs(name, st)...)
}

// Reset implements breaker.Store.
func (s *Store) Reset(ctx context.Context, name string, st breaker.Settings, to breaker.State) (breaker.Status, error) {
	st, err := breaker.Prepare(name, st)
	if err != nil {
		return breaker.Status{}, err
	}
	if to != breaker.StateClosed && to != breaker.StateOpen {
		return breaker.Status{}, breaker.InvalidResetState(to)
	}
	if err := s.register(ctx, name); err != nil {
		return breaker.Status{}, s.fail("reset", name, err)
	}
	args := append(s.commonArgs(name, st), int(to))
	return s.runStatus(ctx, "reset", name, st, resetScript, args...)
}

// runStatus runs script, whose reply is lib.lua's status array, on name's
// keys with args, and returns the status with the Settings st; op names the
// operation in errors.
func (s *Store) runStatus(ctx context.Context, op, name string, st breaker.Settings, script *redisscript.Script, args ...any) (breaker.Status, error) {
	out, err := runScript(ctx, s, op, name, script, func(v any) (breaker.Status, error) {
		out, _, err := decodeStatus(name, v)
		return out, err
	}, args...)
	if err != nil {
		return breaker.Status{}, err
	}
	out.Settings = st
	return out, nil
}

// runScript runs script on name's keys with args and decodes its reply;
// op names the operation in the error of either step (see Store.fail).
func runScript[T any](ctx context.Context, s *Store, op, name string, script *redisscript.Script, decode func(any) (T, error), args ...any) (T, error) {
	var zero T
	v, err := script.Run(ctx, s.client, s.keys(name), args...).Result()
	if err != nil {
		return zero, s.fail(op, name, err)
	}
	out, err := decode(v)
	if err != nil {
		return zero, s.fail(op, name, err)
	}
	return out, nil
}

// Release implements breaker.Store: one ZREM of the permit.
func (s *Store) Release(ctx context.Context, name string, permitID string) error {
	if err := breaker.ValidateName(name); err != nil {
		return err
	}
	if permitID == "" {
		return nil
	}
	if err := s.client.ZRem(ctx, s.keys(name)[1], permitID).Err(); err != nil {
		return s.fail("release", name, err)
	}
	return nil
}
