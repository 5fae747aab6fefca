#!/usr/bin/env python3
"""A TopDeck-style caller of resilienced, and a runnable check of the API.

It guards calls to a fake upstream (a tiny HTTP server on 127.0.0.1) the way
TopDeck guards its Azure DevOps calls: Acquire (inline rate limit and a
breaker) before the call, ReportOutcome (with permit_id and
breaker_generation) after it, and the shared cache for JSON values. Every RPC
carries an x-correlation-id, which the server must echo.

    examples/python/gen.sh            # stubs into examples/python/gen (git-ignored)
    python3 examples/python/client.py [HOST:PORT]

The address comes from the argument, else $TOPDECK_RESILIENCE_ADDR, else
localhost:50051. The stubs come from $TOPDECK_PY_STUBS, else
examples/python/gen. Exit status: 0 when every check held, 1 with a message
when one did not, 3 when the stubs or grpcio are missing.

Names (bucket, breaker, cache key) are unique per run, so it can run again
and again against a long-lived server. The half-open probe is checked when
the breaker policy's recovery_timeout is at most 5s; otherwise the breaker is
closed with ResetBreaker instead.
"""

import http.server
import json
import os
import secrets
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("TOPDECK_PY_STUBS") or os.path.join(HERE, "gen"))

try:
    import grpc
    from google.protobuf import duration_pb2
    from topdeck.resilience.v1 import cache_pb2, cache_pb2_grpc
    from topdeck.resilience.v1 import resilience_pb2 as pb
    from topdeck.resilience.v1 import resilience_pb2_grpc
except ImportError as e:  # pragma: no cover - environment problem
    print(f"python client: {e}: run examples/install-deps.sh, then examples/python/gen.sh", file=sys.stderr)
    sys.exit(3)

RPC_TIMEOUT = 5.0  # seconds, per RPC
MAX_PROBE_WAIT = 5.0  # check the half-open probe only when recovery_timeout <= this


class CheckFailed(Exception):
    """A check did not hold."""


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


def seconds(d):
    """A google.protobuf.Duration as float seconds."""
    return d.seconds + d.nanos / 1e9


def duration(s):
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(s * 1e9))
    return d


class FakeUpstream:
    """A tiny HTTP server on 127.0.0.1 that answers 200 with JSON or 503."""

    def __init__(self):
        self.healthy = True
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                if outer.healthy:
                    body = json.dumps({"org": "org-42", "projects": ["alpha", "beta"], "count": 2}).encode()
                    self.send_response(200)
                else:
                    body = b'{"error":"service unavailable"}'
                    self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/_apis/projects" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def get(self):
        """GETs the upstream: (status, parsed JSON body)."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.url, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Resilience:
    """Calls resilienced with an x-correlation-id on every RPC and checks
    that the server echoes it in the response headers."""

    def __init__(self, addr, run_id):
        self.channel = grpc.insecure_channel(addr)
        self.rs = resilience_pb2_grpc.ResilienceServiceStub(self.channel)
        self.cache = cache_pb2_grpc.CacheServiceStub(self.channel)
        self.run_id = run_id
        self.n = 0

    def call(self, stub, name, request):
        """Calls stub.name(request); raises CheckFailed on an RPC error or
        when the correlation id does not come back."""
        self.n += 1
        cid = f"polyglot-python-{self.run_id}-{self.n}"
        try:
            resp, call = getattr(stub, name).with_call(request, timeout=RPC_TIMEOUT, metadata=[("x-correlation-id", cid)])
        except grpc.RpcError as e:
            raise CheckFailed(f"{name}: {e.code()}: {e.details()}") from None
        got = dict(call.initial_metadata()).get("x-correlation-id")
        expect(got == cid, f"{name}: x-correlation-id header: got {got!r}, want {cid!r}")
        return resp

    def close(self):
        self.channel.close()


class GuardedCaller:
    """What TopDeck does around every outgoing call: acquire, call, report."""

    def __init__(self, api, key, limit, breaker):
        self.api, self.key, self.limit, self.breaker = api, key, limit, breaker

    def acquire(self):
        return self.api.call(self.api.rs, "Acquire", pb.AcquireRequest(key=self.key, limit=self.limit, breaker=self.breaker))

    def report(self, acq, ok, latency):
        return self.api.call(
            self.api.rs,
            "ReportOutcome",
            pb.ReportOutcomeRequest(
                breaker=self.breaker,
                outcome=pb.OUTCOME_SUCCESS if ok else pb.OUTCOME_FAILURE,
                latency=duration(latency),
                permit_id=acq.permit_id,
                breaker_generation=acq.breaker_generation,
            ),
        )

    def call(self, fn):
        """Runs fn() if admitted: returns (acquire response, fn's result or
        None, report response or None)."""
        acq = self.acquire()
        if not acq.allowed:
            return acq, None, None
        start = time.monotonic()
        status, body = fn()
        rep = self.report(acq, 200 <= status < 300, time.monotonic() - start)
        return acq, (status, body), rep


def state_name(s):
    return pb.CircuitState.Name(s)


def run(addr):
    run_id = secrets.token_hex(4)
    api = Resilience(addr, run_id)
    upstream = FakeUpstream()
    try:
        checks(api, upstream, run_id)
    finally:
        upstream.close()
        api.close()


def checks(api, upstream, run_id):
    breaker = f"polyglot-python-{run_id}"
    guarded = GuardedCaller(
        api,
        key=f"polyglot/python/{run_id}",
        limit=pb.RateLimit(max_calls=100, time_window=duration(60)),
        breaker=breaker,
    )
    cache_key = f"polyglot/python/{run_id}/projects"

    # 1. Cache miss, then a guarded call whose JSON result is cached.
    got = api.call(api.cache, "Get", cache_pb2.GetRequest(key=cache_key))
    expect(not got.found and not got.degraded, f"Get of a new key: got found={got.found} degraded={got.degraded}, want a plain miss")

    acq, result, rep = guarded.call(upstream.get)
    expect(acq.allowed and acq.reason == pb.ACQUIRE_REASON_ALLOWED,
           f"first Acquire: got allowed={acq.allowed} reason={pb.AcquireReason.Name(acq.reason)}, want allowed")
    expect(acq.breaker_state == pb.CIRCUIT_STATE_CLOSED, f"first Acquire breaker_state: got {state_name(acq.breaker_state)}, want CLOSED")
    expect(acq.remaining == 99, f"first Acquire remaining: got {acq.remaining}, want 99")
    expect(not acq.degraded, "first Acquire: degraded, want the shared store to answer")
    first_gen = acq.breaker_generation
    expect(result[0] == 200, f"upstream status: got {result[0]}, want 200")
    expect(rep.state == pb.CIRCUIT_STATE_CLOSED and not rep.ignored,
           f"ReportOutcome(success): got state={state_name(rep.state)} ignored={rep.ignored}, want CLOSED, not ignored")

    value = json.dumps(result[1], sort_keys=True).encode()
    st = api.call(api.cache, "Set", cache_pb2.SetRequest(key=cache_key, value=value, ttl=duration(60)))
    expect(st.stored and not st.degraded, f"Set: got stored={st.stored} degraded={st.degraded}, want stored")
    got = api.call(api.cache, "Get", cache_pb2.GetRequest(key=cache_key))
    expect(got.found, "Get after Set: not found")
    expect(0 < seconds(got.ttl) <= 60, f"Get ttl: got {seconds(got.ttl)}s, want in (0, 60]")
    parsed = json.loads(got.value)
    expect(parsed == result[1], f"cached JSON: got {parsed!r}, want {result[1]!r}")

    # 2. An inline limit of 2 calls a minute: the third call is refused.
    tight = pb.AcquireRequest(key=f"polyglot/python/{run_id}/tight", limit=pb.RateLimit(max_calls=2, time_window=duration(60)))
    for want_remaining in (1, 0):
        a = api.call(api.rs, "Acquire", tight)
        expect(a.allowed and a.remaining == want_remaining,
               f"tight Acquire: got allowed={a.allowed} remaining={a.remaining}, want allowed with {want_remaining} left")
    a = api.call(api.rs, "Acquire", tight)
    expect(not a.allowed and a.reason == pb.ACQUIRE_REASON_RATE_LIMITED,
           f"third tight Acquire: got allowed={a.allowed} reason={pb.AcquireReason.Name(a.reason)}, want RATE_LIMITED")
    expect(0 < seconds(a.retry_after) <= 30, f"RATE_LIMITED retry_after: got {seconds(a.retry_after)}s, want in (0, 30]")

    # 3. The upstream fails: reported failures open the breaker.
    policy = api.call(api.rs, "BreakerState", pb.BreakerStateRequest(breaker=breaker)).status.policy
    upstream.healthy = False
    tries = max(policy.failure_threshold, policy.minimum_calls) + 3
    opened = False
    for _ in range(tries):
        acq, result, rep = guarded.call(upstream.get)
        expect(acq.allowed, f"Acquire before the breaker opened: refused ({pb.AcquireReason.Name(acq.reason)})")
        expect(result[0] == 503, f"failing upstream status: got {result[0]}, want 503")
        expect(not rep.ignored, "ReportOutcome(failure): ignored, want counted")
        if rep.state == pb.CIRCUIT_STATE_OPEN:
            opened = True
            break
    expect(opened, f"breaker still {state_name(rep.state)} after {tries} failures (policy {policy.mode} threshold {policy.failure_threshold})")

    hits = upstream.hits
    acq, result, _ = guarded.call(upstream.get)
    expect(not acq.allowed and acq.reason == pb.ACQUIRE_REASON_CIRCUIT_OPEN,
           f"Acquire on an open breaker: got allowed={acq.allowed} reason={pb.AcquireReason.Name(acq.reason)}, want CIRCUIT_OPEN")
    expect(acq.breaker_state == pb.CIRCUIT_STATE_OPEN, f"breaker_state: got {state_name(acq.breaker_state)}, want OPEN")
    expect(seconds(acq.retry_after) > 0, "CIRCUIT_OPEN retry_after: got 0, want > 0")
    expect(upstream.hits == hits, "the upstream was called although the breaker refused")
    open_gen = acq.breaker_generation
    expect(open_gen > first_gen, f"generation after opening: got {open_gen}, want > {first_gen}")

    # 4. Recovery: a half-open probe carries a permit_id back; or a reset.
    upstream.healthy = True
    recovery = seconds(policy.recovery_timeout)
    if recovery <= MAX_PROBE_WAIT:
        deadline = time.monotonic() + recovery + 3
        while True:
            time.sleep(max(min(seconds(acq.retry_after), 1.0), 0.02))
            acq = guarded.acquire()
            if acq.allowed or time.monotonic() > deadline:
                break
        expect(acq.allowed, f"Acquire after recovery_timeout {recovery}s: still refused ({pb.AcquireReason.Name(acq.reason)})")
        expect(acq.breaker_state == pb.CIRCUIT_STATE_HALF_OPEN and acq.permit_id,
               f"probe: got breaker_state={state_name(acq.breaker_state)} permit_id={acq.permit_id!r}, want HALF_OPEN with a permit")
        status, _ = upstream.get()
        rep = guarded.report(acq, status == 200, 0.001)
        expect(not rep.ignored, "probe outcome ignored, want counted")
        for _ in range(policy.success_threshold - 1):  # more probes when the policy asks for them
            acq, _, rep = guarded.call(upstream.get)
            expect(acq.allowed and rep and not rep.ignored, "further probe refused or ignored")
        expect(rep.state == pb.CIRCUIT_STATE_CLOSED, f"after successful probes: got {state_name(rep.state)}, want CLOSED")
        how = "half-open probe"
    else:
        st = api.call(api.rs, "ResetBreaker", pb.ResetBreakerRequest(breaker=breaker)).status
        expect(st.state == pb.CIRCUIT_STATE_CLOSED, f"ResetBreaker: got {state_name(st.state)}, want CLOSED")
        how = f"ResetBreaker (recovery_timeout {recovery}s > {MAX_PROBE_WAIT}s: probe not checked)"

    # 5. An outcome from the generation that opened it is stale: ignored.
    stale = api.call(api.rs, "ReportOutcome", pb.ReportOutcomeRequest(
        breaker=breaker, outcome=pb.OUTCOME_FAILURE, breaker_generation=open_gen))
    expect(stale.ignored, f"outcome of generation {open_gen}: got ignored=False, want ignored")
    st = api.call(api.rs, "BreakerState", pb.BreakerStateRequest(breaker=breaker)).status
    expect(st.state == pb.CIRCUIT_STATE_CLOSED and st.generation > open_gen,
           f"BreakerState: got {state_name(st.state)} generation {st.generation}, want CLOSED after generation {open_gen}")

    acq, result, rep = guarded.call(upstream.get)
    expect(acq.allowed and result[0] == 200 and rep.state == pb.CIRCUIT_STATE_CLOSED, "guarded call after recovery failed")

    deleted = api.call(api.cache, "Delete", cache_pb2.DeleteRequest(keys=[cache_key])).deleted
    expect(deleted == 1, f"Delete: got {deleted} deleted, want 1")

    print(f"python client: OK ({api.n} RPCs; breaker {breaker} opened after failures and closed by {how}; "
          f"rate limit, cache JSON round trip and x-correlation-id checked)")


def main(argv):
    addr = argv[1] if len(argv) > 1 else os.environ.get("TOPDECK_RESILIENCE_ADDR", "localhost:50051")
    try:
        run(addr)
    except CheckFailed as e:
        print(f"python client: FAILED against {addr}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
