#!/usr/bin/env python3
"""The near cache of ``topdeck_resilience.cache.Cache``: a hit from process
memory next to a Get through the service, and a bare Redis GET of the same
value (the yardstick of issue 17): a raw RESP round trip over a blocking
socket, the least any Python Redis client can cost, and, when redis-py is
installed (Debian: python3-redis), a redis-py GET plus json.loads. Not a
test: it prints figures.

    /usr/bin/python3 clients/python/bench_near.py              # builds resilienced, starts it on a private redis-server
    /usr/bin/python3 clients/python/bench_near.py --rounds 5 --seconds 1

One caller, one call at a time, on one grpc.aio channel; each figure is the
median per-call time of ``--rounds`` rounds of ``--seconds`` each (the value:
100 bytes of JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import grpc  # noqa: E402

from topdeck_resilience import ResilienceClient  # noqa: E402
from topdeck_resilience.cache import Cache, CacheConfig  # noqa: E402

VALUE = "x" * 98  # json.dumps: 100 bytes
DICT = {"org": "org-42", "projects": ["alpha", "beta", "gamma"], "n": 3, "ok": True, "owner": "team-x"}  # about 100 bytes


async def per_call(seconds: float, call: Callable[[], Awaitable[object]]) -> float:
    """Microseconds per call, calling ``call`` back to back for ``seconds``."""
    n = 0
    t0 = time.perf_counter()
    stop = t0 + seconds
    while True:
        for _ in range(50):
            await call()
        n += 50
        now = time.perf_counter()
        if now >= stop:
            return (now - t0) / n * 1e6


def redis_get_us(port: int, seconds: float) -> float:
    """Microseconds per raw RESP GET of a 100-byte value (blocking socket)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        v = json.dumps(VALUE).encode()
        s.sendall(b"*3\r\n$3\r\nSET\r\n$5\r\nbench\r\n$%d\r\n%s\r\n" % (len(v), v))
        s.recv(64)
        req = b"*2\r\n$3\r\nGET\r\n$5\r\nbench\r\n"
        want = len(b"$100\r\n") + len(v) + 2
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            s.sendall(req)
            got = 0
            while got < want:
                got += len(s.recv(4096))
            n += 1
        return (time.perf_counter() - t0) / n * 1e6


def redispy_get_us(port: int, seconds: float) -> float:
    """Microseconds per redis-py GET (sync client), when redis-py is installed."""
    import redis  # type: ignore[import]

    r = redis.Redis(port=port)
    r.get("bench")
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        json.loads(r.get("bench"))
        n += 1
    r.close()
    return (time.perf_counter() - t0) / n * 1e6


def have_redispy() -> bool:
    try:
        import redis  # type: ignore[import]  # noqa: F401
    except ImportError:
        return False
    return True


async def main(addr: str, redis_port: int, seconds: float, rounds: int) -> dict:
    client = ResilienceClient(addr, timeout=5.0)
    cache = Cache(CacheConfig(key_prefix="bench:"), client=client)
    assert await cache.connect() and cache.near_cache_live, "near cache not live"
    assert await cache.set("k", VALUE, ttl=3600)
    while await cache.get("k") != VALUE or cache.near_cache_len == 0:  # filled (a fill racing our own Set's invalidation is void)
        await asyncio.sleep(0.01)

    async def near_hit() -> None:
        assert await cache.get("k") == VALUE

    assert await cache.set("d", DICT, ttl=3600)
    while await cache.get("d") != DICT or cache.near_cache_len < 2:
        await asyncio.sleep(0.01)

    async def near_hit_dict() -> None:  # a container: decoded anew on each hit (the caller's copy)
        assert await cache.get("d") == DICT

    async def service_get() -> None:  # near=False: a plain Get (the replica's memory layer may answer)
        assert await cache.get("k", near=False) == VALUE

    from topdeck_resilience._gen import cache_pb2

    fresh_req = cache_pb2.GetRequest(key="bench:k", fresh=True)

    async def service_get_fresh() -> None:  # what a near-cache fill costs: a read of the shared store
        r = await client._call("cs", "Get", fresh_req)
        assert r.found

    cases = {"near_hit": near_hit, "near_hit_dict": near_hit_dict, "service_get": service_get, "service_get_fresh": service_get_fresh}
    for f in cases.values():  # warm up
        await per_call(0.3, f)
    res: dict = {k: [] for k in cases}
    res["redis_get"] = []
    res["redispy_get"] = []
    for _ in range(rounds):
        for name, f in cases.items():
            res[name].append(await per_call(seconds, f))
        if redis_port:
            res["redis_get"].append(redis_get_us(redis_port, seconds))
            if have_redispy():
                res["redispy_get"].append(redispy_get_us(redis_port, seconds))
    hits_before = cache._near_hits
    await cache.close()
    await client.close()
    out = {f"{k}_us": round(statistics.median(v), 3) for k, v in res.items() if v}
    out["service_get_over_near_hit"] = round(out["service_get_us"] / out["near_hit_us"], 1)
    if "redis_get_us" in out:
        out["redis_get_over_near_hit"] = round(out["redis_get_us"] / out["near_hit_us"], 1)
    if "redispy_get_us" in out:
        out["redispy_get_over_near_hit_dict"] = round(out["redispy_get_us"] / out["near_hit_dict_us"], 1)
    out["near_hits_counted"] = hits_before
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bin", help="a resilienced binary (default: go build one from this tree)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="pysdk-bench-near-")
    procs: List[subprocess.Popen] = []
    try:
        redis_port = 0
        argv = []
        rs = shutil.which("redis-server")
        if rs:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                redis_port = s.getsockname()[1]
            procs.append(subprocess.Popen([rs, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                           "--dir", tmp], stdout=subprocess.DEVNULL))
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", redis_port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            argv = ["--redis-url", f"redis://127.0.0.1:{redis_port}/0"]
        binary = a.bin
        if binary is None:
            subprocess.run(["go", "build", "-o", tmp + "/", "./cmd/resilienced"], cwd=HERE.parent.parent, check=True)
            binary = tmp + "/resilienced"
        p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--metrics-listen", "", *argv],
                             stdout=subprocess.PIPE, text=True)
        procs.append(p)
        addr = ""
        assert p.stdout is not None
        for line in p.stdout:
            rec = json.loads(line)
            if rec.get("msg") == "resilienced started":
                addr = rec["listen"]
                break
        if not addr:
            raise SystemExit("resilienced did not start")
        res = asyncio.run(main(addr, redis_port, a.seconds, a.rounds))
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    res.update(store="redis" if redis_port else "embedded", seconds=a.seconds, rounds=a.rounds,
               python=sys.version.split()[0], grpcio=grpc.__version__, cpus=os.cpu_count())
    print(json.dumps(res))
