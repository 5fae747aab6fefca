"""One Python process of the fleet test: connects, says "ready", waits for a
line on stdin, then takes tokens of one key through one replica, and prints how many
it was given as JSON. fail_open=False: a local decision would break the count. Run by test_fleet.py."""

import asyncio
import json
import sys
import time

import topdeck_resilience as tr


async def main(addr: str, key: str, max_calls: int, window: float, tries: int) -> None:
    client = tr.ResilienceClient(addr, timeout=2.0, fail_open=False)
    lim = tr.RateLimiter(max_calls, window, key=key, client=client)
    await tr.RateLimiter(1, 1.0, key=key + "/warm-up", client=client).try_acquire()  # connected before the start
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # the start signal
    admitted = 0
    for _ in range(tries):  # paced, so that both processes take part
        admitted += await lim.try_acquire()
        await asyncio.sleep(0.002)
    await client.close()
    print(json.dumps({"admitted": admitted}), flush=True)


if __name__ == "__main__":
    addr, key, max_calls, window, tries = sys.argv[1:]
    asyncio.run(main(addr, key, int(max_calls), float(window), int(tries)))
