"""One Python process of the upstream-feedback test: through replica ADDR,
a RateLimiter on KEY runs a call that fails with an HTTP 429 (an
httpx-shaped exception carrying Retry-After: 30), then prints "done". Run by
test_slots_upstream.py."""

import asyncio
import sys

import topdeck_resilience as tr


class Response:
    status_code = 429
    headers = {"retry-after": "30", "x-ratelimit-remaining": "0"}


class HTTPStatusError(Exception):
    response = Response()


async def main(addr: str, key: str) -> None:
    client = tr.ResilienceClient(addr, timeout=2.0, fail_open=False)
    limiter = tr.RateLimiter(100, 60.0, key=key, client=client)
    try:
        async with limiter:
            raise HTTPStatusError("429 Too Many Requests")
    except HTTPStatusError:
        pass
    await client.close()
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
