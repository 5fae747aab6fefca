package redisstore

import (
	"context"
	"strconv"

	"github.com/topdeck/resilience/breaker"
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
	v, err := allowScript.Run(ctx, s.client, s.keys(name), s.commonArgs(name, st)...).Result()
	if err != nil {
		return breaker.Admission{}, s.fail("allow", name, err)
	}
	adm, err := decodeAdmission(v)
	if err != nil {
		return breaker.Admission{}, s.fail("allow", name, err)
	}
	return adm, nil
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
	v, err := reportScript.Run(ctx, s.client, s.keys(name), args...).Result()
	if err != nil {
		return breaker.ReportResult{}, s.fail("report", name, err)
	}
	res, err := decodeReport(v)
	if err != nil {
		return breaker.ReportResult{}, s.fail("report", name, err)
	}
	return res, nil
}

// Status implements breaker.Store. It writes nothing.
func (s *Store) Status(ctx context.Context, name string, st breaker.Settings) (breaker.Status, error) {
	st, err := breaker.Prepare(name, st)
	if err != nil {
		return breaker.Status{}, err
	}
	v, err := statusScript.Run(ctx, s.client, s.keys(name), s.commonArgs(name, st)...).Result()
	if err != nil {
		return breaker.Status{}, s.fail("status", name, err)
	}
	out, _, err := decodeStatus(name, v)
	if err != nil {
		return breaker.Status{}, s.fail("status", name, err)
	}
	out.Settings = st
	return out, nil
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
	v, err := resetScript.Run(ctx, s.client, s.keys(name), args...).Result()
	if err != nil {
		return breaker.Status{}, s.fail("reset", name, err)
	}
	out, _, err := decodeStatus(name, v)
	if err != nil {
		return breaker.Status{}, s.fail("reset", name, err)
	}
	out.Settings = st
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
