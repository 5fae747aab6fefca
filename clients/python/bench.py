#!/usr/bin/env python3
"""Throughput of RateLimiter.acquire() from one Python process, next to a bare
grpc.aio health Check on the same server (the floor: one unary RPC with
nothing around it). Not a test: it prints figures.

    /usr/bin/python3 clients/python/bench.py                 # builds and starts resilienced (embedded store)
    /usr/bin/python3 clients/python/bench.py --addr HOST:PORT --concurrency 64 --seconds 5 --rounds 3

Each round runs the health Check, then acquire(), then (for context) the same
Acquire through the bare generated stub, for ``--seconds`` each,
with ``--concurrency`` tasks on one channel; the figure of each is its best
round (the least disturbed by other load on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import grpc.aio  # noqa: E402

import topdeck_resilience as tr  # noqa: E402


async def run(concurrency: int, seconds: float, call) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * concurrency

    async def worker(i: int) -> None:
        while time.monotonic() < stop:
            await call()
            counts[i] += 1

    t0 = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return sum(counts) / (time.monotonic() - t0)


async def main(addr: str, concurrency: int, seconds: float, rounds: int) -> dict:
    channel = grpc.aio.insecure_channel(addr)
    check = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=lambda b: b, response_deserializer=lambda b: b)

    async def health() -> None:
        await check(b"", timeout=5.0)  # HealthCheckRequest{service: ""} is zero bytes

    client = tr.ResilienceClient(addr, timeout=5.0)  # the same bound as the bare calls: a loaded machine must not turn into local decisions
    limiter = tr.RateLimiter(max_calls=1_000_000_000, time_window=1.0, key="bench/acquire", client=client)

    async def acquire() -> None:
        d = await limiter.acquire()
        assert d.allowed and not d.local

    # For context: the same Acquire through the generated stub, nothing around it.
    from topdeck_resilience._gen import resilience_pb2 as pb, resilience_pb2_grpc

    stub = resilience_pb2_grpc.ResilienceServiceStub(channel)
    req = pb.AcquireRequest(key="bench/raw", limit=pb.RateLimit(max_calls=1_000_000_000, time_window={"seconds": 1}))

    async def raw() -> None:
        await stub.Acquire(req, timeout=5.0)

    for f in (health, acquire, raw):  # warm up
        await run(concurrency, 0.5, f)
    best_h = best_a = best_r = 0.0
    for _ in range(rounds):
        best_h = max(best_h, await run(concurrency, seconds, health))
        best_a = max(best_a, await run(concurrency, seconds, acquire))
        best_r = max(best_r, await run(concurrency, seconds, raw))
    await client.close()
    await channel.close()
    return {"health_check_per_s": round(best_h), "acquire_per_s": round(best_a), "ratio": round(best_a / best_h, 3),
            "raw_stub_acquire_per_s": round(best_r), "raw_ratio": round(best_r / best_h, 3)}


def start_server() -> "tuple[subprocess.Popen, str, str]":
    tmp = tempfile.mkdtemp(prefix="pysdk-bench-")
    repo = HERE.parent.parent
    subprocess.run(["go", "build", "-o", tmp + "/", "./cmd/resilienced"], cwd=repo, check=True)
    p = subprocess.Popen([tmp + "/resilienced", "--listen", "127.0.0.1:0", "--metrics-listen", ""],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    deadline = time.monotonic() + 15
    for line in p.stdout:
        rec = json.loads(line)
        if rec.get("msg") == "resilienced started":
            return p, rec["listen"], tmp
        if time.monotonic() > deadline:
            break
    p.kill()
    raise SystemExit("resilienced did not start")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addr", help="a running resilienced (default: build and start one on the embedded store)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    proc = None
    addr = a.addr
    if addr is None:
        proc, addr, _ = start_server()
    try:
        res = asyncio.run(main(addr, a.concurrency, a.seconds, a.rounds))
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    res.update(concurrency=a.concurrency, seconds=a.seconds, rounds=a.rounds, python=sys.version.split()[0],
               grpcio=grpc.__version__, cpus=os.cpu_count())
    print(json.dumps(res))
