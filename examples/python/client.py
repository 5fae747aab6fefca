#!/usr/bin/env python3
"""A TopDeck-style caller of resilienced through the Python SDK
(clients/python, import name topdeck_resilience), and a runnable check of it.

It guards calls to a fake upstream (a tiny HTTP server on 127.0.0.1) the way
TopDeck guards its Azure DevOps calls, with the seed's API: a RateLimiter
and a CircuitBreaker around the call, retry_with_backoff, and the shared
Cache for JSON values; every RPC carries the correlation id set with
set_correlation_id, which the server logs.

    clients/python/install.sh            # once: the SDK and its Debian deps
    python3 examples/python/client.py [HOST:PORT]

The address comes from the argument, else $TOPDECK_RESILIENCE_ADDR, else
localhost:50051. Exit status: 0 when every check held, 1 with a message
when one did not, 3 when the SDK or grpcio is missing.

Names (bucket, breaker, cache key) are unique per run, so it can run again
and again against a long-lived server. The half-open probe is checked when
the breaker policy's recovery_timeout is at most 5s; otherwise the breaker is
closed with reset() instead.
"""

import asyncio
import http.server
import json
import os
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
# Run from a checkout without installing: the SDK's source is two levels up.
sys.path.append(os.path.join(HERE, "..", "..", "clients", "python"))

try:
    import topdeck_resilience as tr
    from topdeck_resilience.cache import Cache
    from topdeck_resilience.logging_config import set_correlation_id
    from topdeck_resilience.resilience import CircuitBreaker, RateLimiter, RetryConfig, retry_with_backoff
except ImportError as e:  # pragma: no cover - environment problem
    print(f"python client: {e}: run clients/python/install.sh", file=sys.stderr)
    sys.exit(3)

MAX_PROBE_WAIT = 5.0  # check the half-open probe only when recovery_timeout <= this


class CheckFailed(Exception):
    """A check did not hold."""


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


class UpstreamError(Exception):
    """The fake upstream answered 5xx."""

    def __init__(self, status):
        super().__init__(f"upstream answered {status}")
        self.status = status


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

    def get_sync(self):
        """GETs the upstream: the parsed JSON body, or UpstreamError."""
        try:
            with urllib.request.urlopen(self.url, timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise UpstreamError(e.code) from None

    async def get(self):
        return await asyncio.to_thread(self.get_sync)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


async def checks(client, upstream, run_id):
    key = f"polyglot/python/{run_id}"
    breaker = CircuitBreaker(f"polyglot-python-{run_id}", client=client)
    limiter = RateLimiter(max_calls=100, time_window=60.0, key=key, client=client)
    cache = Cache(client=client)
    n = 0

    def correlate():
        nonlocal n
        n += 1
        set_correlation_id(f"polyglot-python-{run_id}-{n}")

    @breaker
    async def list_projects():
        async with limiter:
            return await upstream.get()

    # 1. Cache miss, then a guarded call whose JSON result is cached.
    correlate()
    expect(await cache.connect(), "cache.connect: the service did not answer")
    cache_key = f"polyglot/python/{run_id}/projects"
    expect(await cache.get(cache_key) is None, "Get of a new key: want a miss")
    correlate()
    projects = await cache.get_or_load(cache_key, list_projects, ttl=60)
    expect(projects["count"] == 2, f"upstream body: got {projects!r}")
    expect(await breaker.state() == tr.CircuitState.CLOSED, "breaker not CLOSED after a success")
    d = await limiter.check(dry_run=True)  # as a second call would be answered: 98 left after it
    expect(d.allowed and d.remaining == 98 and not d.degraded, f"limiter after one call: got {d}, want 98 left after a second, not degraded")
    correlate()
    expect(await cache.get(cache_key) == projects, "cached JSON differs from the upstream's")
    hits = upstream.hits
    expect(await cache.get_or_load(cache_key, list_projects) == projects and upstream.hits == hits, "get_or_load called the upstream on a hit")

    # 2. An inline limit of 2 calls a minute: the third call is refused.
    correlate()
    tight = RateLimiter(2, 60.0, key=f"{key}/tight", client=client)
    expect(await tight.try_acquire() and await tight.try_acquire(), "tight limiter refused its first two calls")
    try:
        await tight.acquire(max_wait=0.1)
        raise CheckFailed("third call of a 2/min limit admitted")
    except tr.RateLimited as e:
        expect(0 < e.retry_after <= 30, f"RateLimited.retry_after: got {e.retry_after}s, want in (0, 30]")

    # 3. The upstream fails: failures open the breaker; retry_with_backoff gives up on it.
    correlate()
    status = await breaker.status()
    policy = status.policy
    upstream.healthy = False
    opened = False
    for _ in range(max(policy.failure_threshold, policy.minimum_calls) + 3):
        try:
            await list_projects()
        except UpstreamError:
            pass
        if await breaker.state() == tr.CircuitState.OPEN:
            opened = True
            break
    expect(opened, f"breaker still closed after failures (policy {policy.mode} threshold {policy.failure_threshold})")
    hits = upstream.hits
    try:
        await list_projects()
        raise CheckFailed("call admitted by an open breaker")
    except tr.CircuitOpenError as e:
        expect(e.retry_after > 0 and not e.local, f"CircuitOpenError: retry_after={e.retry_after} local={e.local}")
    expect(upstream.hits == hits, "the upstream was called although the breaker refused")

    # 4. Recovery: retry_with_backoff waits the breaker's retry-after, the probe closes it.
    upstream.healthy = True
    correlate()
    recovery = policy.recovery_timeout
    if recovery <= MAX_PROBE_WAIT:
        retried = retry_with_backoff(RetryConfig(max_attempts=5, initial_delay=0.05, deadline=recovery + 3),
                                     exceptions=(tr.CircuitOpenError,))(list_projects)
        expect((await retried())["count"] == 2, "call after recovery failed")
        how = "half-open probe"
    else:
        await breaker.reset()
        how = f"reset() (recovery_timeout {recovery}s > {MAX_PROBE_WAIT}s: probe not checked)"
    expect(await breaker.state() == tr.CircuitState.CLOSED, "breaker not CLOSED after recovery")

    correlate()
    expect(await cache.delete(cache_key), "cache delete: key not found")
    set_correlation_id(None)
    print(f"python client: OK ({n} correlation ids; breaker {breaker.name} opened after failures and closed by {how}; "
          f"rate limit, cache JSON round trip and correlation ids checked)")


async def run(addr):
    run_id = secrets.token_hex(4)
    upstream = FakeUpstream()
    client = tr.ResilienceClient(addr, timeout=5.0, fail_open=False)  # a check: no local decisions
    try:
        await checks(client, upstream, run_id)
    finally:
        await client.close()
        upstream.close()


def main(argv):
    addr = argv[1] if len(argv) > 1 else os.environ.get("TOPDECK_RESILIENCE_ADDR") or "localhost:50051"
    try:
        asyncio.run(run(addr))
    except (CheckFailed, tr.ResilienceError) as e:
        print(f"python client: FAILED against {addr}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
