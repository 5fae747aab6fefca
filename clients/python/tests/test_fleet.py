"""Two replicas on one private Redis, two Python processes on one key: one exact limit."""

import asyncio
import json
import os
import subprocess
import sys
import time

import topdeck_resilience as tr
from conftest import PKG_DIR, unique


async def test_two_processes_two_replicas_share_one_exact_limit(start_server, start_redis) -> None:
    redis = start_redis()
    a = start_server("--redis-url", redis.url)
    b = start_server("--redis-url", redis.url)
    key = unique("fleet")
    max_calls, tries = 40, 100
    env = dict(os.environ, PYTHONPATH=str(PKG_DIR) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    worker = str(PKG_DIR / "tests" / "fleet_worker.py")
    procs = [
        subprocess.Popen([sys.executable, worker, srv.addr, key, str(max_calls), "3600", str(tries)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        for srv in (a, b)
    ]
    outs = []
    try:
        for p in procs:  # both connected and warm
            line = await asyncio.wait_for(asyncio.to_thread(p.stdout.readline), 20)
            assert line.strip() == "ready", (line, p.stderr.read() if p.poll() is not None else "")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            out, err = await asyncio.to_thread(p.communicate, timeout=30)
            assert p.returncode == 0, err
            outs.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    admitted = [o["admitted"] for o in outs]
    assert sum(admitted) == max_calls, admitted  # exact: not one more, not one fewer
    assert all(n > 0 for n in admitted), admitted  # both really took part

    # And the bucket is empty for anyone else, through either replica.
    async with tr.ResilienceClient(a.addr) as c:
        d = await c.acquire(key, limit=tr.RateLimit(max_calls, 3600.0))
        assert not d.allowed and not d.degraded
