"""The Cache's near cache against real resilienced replicas: hits from memory
(no RPC, as the server's debug access log shows), invalidation through
another replica on one private Redis (with the delay measured), the stream
broken (replica killed or hung) -> emptied and bypassed, TTLs, opt-outs,
close(). And the model underneath: Redis glob rules, fills, bounds."""

import asyncio
import random
import statistics
import time
from typing import List

import pytest

import topdeck_resilience as tr
from topdeck_resilience._near import Near, glob_match
from topdeck_resilience.cache import Cache, CacheConfig
from topdeck_resilience.logging_config import correlation_id_var, set_correlation_id
from conftest import unique

BOUND = 2.0  # seconds: a generous bound on anything the stream must do


async def until(pred, what: str, limit: float = BOUND) -> float:
    """Polls ``pred`` (every ~1 ms) until true; returns how long it took."""
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < limit, f"{what}: not within {limit}s"
        await asyncio.sleep(0.001)
    return time.monotonic() - t0


async def live_cache(client, prefix: str = "", **cfg) -> Cache:
    c = Cache(CacheConfig(key_prefix=prefix or unique("near") + ":", **cfg), client=client)
    assert await c.connect()
    await until(lambda: c.near_cache_live, "near cache live after connect()")
    return c


async def held(cache: Cache, key: str, value) -> None:
    """Reads ``key`` until the near cache holds ``value`` (a fill is void
    when an invalidation of its key, e.g. of our own Set, comes back on the
    stream while it is in flight)."""
    t0 = time.monotonic()
    while True:
        assert await cache.get(key) == value
        if cache._near.get(cache._key(key), cache.client._clock()) is not None:
            return
        assert time.monotonic() - t0 < BOUND, f"{key} not held within {BOUND}s"
        await asyncio.sleep(0.001)


def near_hits(cache: Cache) -> int:
    return cache._near_hits


def get_lines(server, cid: str) -> List[dict]:
    return [r for r in server.lines() if r.get("grpc.method") == "Get" and r.get("correlation_id") == cid]


# ---------------------------------------------------------------------------
# The model


def reference_match(pattern: bytes, key: bytes) -> bool:
    """cache/match.go's Match, transcribed literally: the reference."""
    def match_byte(p: int, c: int):
        t = pattern[p]
        if t == ord("?"):
            return True, p + 1
        if t == ord("\\"):
            if p + 1 < len(pattern):
                return pattern[p + 1] == c, p + 2
            return c == ord("\\"), p + 1
        if t == ord("["):
            i = p + 1
            neg = i < len(pattern) and pattern[i] == ord("^")
            if neg:
                i += 1
            m = False
            while i < len(pattern):
                if pattern[i] == ord("\\") and len(pattern) - i >= 2:
                    m = m or pattern[i + 1] == c
                    i += 2
                    continue
                if pattern[i] == ord("]"):
                    return (not m) if neg else m, i + 1
                if len(pattern) - i >= 3 and pattern[i + 1] == ord("-"):
                    lo, hi = sorted((pattern[i], pattern[i + 2]))
                    m = m or lo <= c <= hi
                    i += 3
                    continue
                m = m or pattern[i] == c
                i += 1
            return (not m) if neg else m, i
        return t == c, p + 1

    p = k = 0
    star_p, star_k = -1, 0
    while k < len(key):
        if p < len(pattern) and pattern[p] == ord("*"):
            while p < len(pattern) and pattern[p] == ord("*"):
                p += 1
            if p == len(pattern):
                return True
            star_p, star_k = p, k
            continue
        if p < len(pattern):
            ok, nxt = match_byte(p, key[k])
            if ok:
                p, k = nxt, k + 1
                continue
        if star_p < 0:
            return False
        star_k += 1
        p, k = star_p, star_k
    while p < len(pattern) and pattern[p] == ord("*"):
        p += 1
    return p == len(pattern)


@pytest.mark.parametrize("pattern,key,want", [
    ("*", "anything/with/slashes", True), ("*", "", True), ("", "", True), ("", "a", False),
    ("a*b", "a/x/b", True), ("a*b", "a/x/bc", False), ("a**b", "ab", True), ("*a*a*", "banana", True),
    ("*x*", "banana", False), ("?", "a", True), ("?", "", False), ("?", "ab", False),
    ("h[ae]llo", "hallo", True), ("h[^e]llo", "hello", False), ("h[b-a]llo", "hbllo", True),
    (r"h\*llo", "h*llo", True), (r"h\*llo", "hallo", False), (r"\[x\]", "[x]", True), (r"[\]]", "]", True),
    ("[]", "a", False), ("[^]", "a", True), ("[ab", "a", True), ("[ab", "ab", False), ("a\\", "a\\", True),
    ("[a-]", "-", False), ("[a-]", "^", True), ("[x-z]*", "y/z", True),
    ("org/*/vm", "org/a/b/vm", True),  # fnmatch-style path rules would say the same, but:
    ("org/[!a]*", "org/b", False),    # "!" is not a negation in Redis (fnmatch: True)
    ("??", "é", True),                # bytes, not characters (UTF-8)
])
def test_glob_matches_like_redis(pattern: str, key: str, want: bool) -> None:
    assert glob_match(pattern, key) is want
    assert reference_match(pattern.encode(), key.encode()) is want


def test_glob_agrees_with_the_reference_on_random_patterns() -> None:
    rnd = random.Random(17)
    alphabet = "ab/*?[]^-\\"
    for _ in range(3000):
        p = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 8)))
        k = "".join(rnd.choice("ab/-]^\\") for _ in range(rnd.randint(0, 8)))
        assert glob_match(p, k) == reference_match(p.encode(), k.encode()), (p, k)


def got(near: Near, key: str, now: float):
    e = near.get(key, now)
    return e.value if e is not None else None


def test_near_model_fills_ttl_bounds_gaps() -> None:
    n = Near(max_entries=3, max_bytes=10_000)
    assert n.begin("k", 0.0) is None and not n.live  # not live: nothing read may be kept
    n.set_live(True)
    # A read in flight when its key's invalidation arrives keeps nothing.
    f = n.begin("k", 0.0)
    n.invalidate_keys(["k"])
    assert not n.commit(f, b"1", 10.0) and got(n, "k", 0.0) is None
    f = n.begin("res/1/x", 0.0)
    n.invalidate_pattern("res/*")
    assert not n.commit(f, b"1", 10.0)
    # ... and so does one across a gap (the stream broke and came back).
    f = n.begin("k", 0.0)
    n.set_live(False)
    n.set_live(True)
    assert not n.commit(f, b"1", 10.0)
    # The TTL counts from when the read began, not when it answered.
    f = n.begin("k", 100.0)
    assert n.commit(f, b"1", 10.0)
    assert got(n, "k", 109.999) == b"1" and got(n, "k", 110.0) is None and len(n) == 0
    # LRU by entries: a hit makes an entry the most recently used.
    for i, k in enumerate("abc"):
        assert n.commit(n.begin(k, 0.0), b"v", None)
    assert got(n, "a", 1.0) == b"v"
    assert n.commit(n.begin("d", 0.0), b"v", None)
    assert [got(n, k, 1.0) for k in "abcd"] == [b"v", None, b"v", b"v"]
    # LRU by bytes (keys, values, 128 per entry); an entry over the bound is not kept.
    m = Near(max_entries=100, max_bytes=3 * (1 + 100 + 128))
    m.set_live(True)
    for k in "wxyz":
        assert m.commit(m.begin(k, 0.0), b"v" * 100, None)
    assert len(m) == 3 and m.bytes == 3 * 229 and got(m, "w", 0.0) is None
    assert not m.commit(m.begin("big", 0.0), b"v" * 1000, None)
    # max_age caps an entry on top of its TTL.
    a = Near(max_age=5.0)
    a.set_live(True)
    assert a.commit(a.begin("k", 0.0), b"1", None)
    assert got(a, "k", 4.9) == b"1" and got(a, "k", 5.0) is None


# ---------------------------------------------------------------------------
# Against the service


async def test_hits_are_served_from_memory(server, client) -> None:
    cache = await live_cache(client)
    try:
        assert await cache.set("p", {"v": [1, 2]}, ttl=60)
        await held(cache, "p", {"v": [1, 2]})  # a fresh read fills the near cache
        hits0 = near_hits(cache)
        cid = unique("nearhit")
        tok = set_correlation_id(cid)
        try:
            got = [await cache.get("p") for _ in range(50)]
            got[0]["v"].append(3)  # the caller's copy: the near cache keeps bytes
            assert await cache.get("p") == {"v": [1, 2]}
            assert await cache.get("p", near=False) == {"v": [1, 2]}  # the one RPC of this id
        finally:
            correlation_id_var.reset(tok)
        await until(lambda: len(get_lines(server, cid)) >= 1, "the access log line of the near=False get")
        await asyncio.sleep(0.05)
        assert len(get_lines(server, cid)) == 1, get_lines(server, cid)
        local = (await cache.stats())["local"]
        assert local["near_hits"] - hits0 == 51 and local["near_entries"] == 1 and local["near_live"]
        assert local["near_bytes"] == len(cache._key("p")) + len(b'{"v": [1, 2]}') + 128
    finally:
        await cache.close()


async def test_own_writes_drop_keys_at_once(client) -> None:
    cache = await live_cache(client)
    try:
        for k in ("a", "b", "res/1/x", "res/2/y", "other"):
            assert await cache.set(k, k)
        for k in ("a", "b", "res/1/x", "res/2/y", "other"):
            await held(cache, k, k)
        assert cache.near_cache_len == 5
        assert await cache.set("a", "a2")
        assert cache.near_cache_len == 4 and await cache.get("a") == "a2"
        assert await cache.delete("b") and cache.near_cache_len <= 4 and await cache.get("b") is None
        assert await cache.delete_pattern("res/*") == 2  # "*" crosses "/"
        assert await cache.get("res/1/x") is None and await cache.get("other") == "other"
    finally:
        await cache.close()


async def test_opt_outs(server, client) -> None:
    off = Cache(CacheConfig(key_prefix=unique("off") + ":", near_cache=False), client=client)
    assert await off.connect() and off._watch is None and not off.near_cache_live
    assert await off.set("k", 1) and await off.get("k") == 1 and await off.get("k") == 1
    assert off.near_cache_len == 0 and off._watch is None and (await off.stats())["local"]["near_hits"] == 0
    await off.close()

    cache = await live_cache(client)
    try:
        assert await cache.set("k", 1)
        assert await cache.get("k", near=False) == 1
        assert cache.near_cache_len == 0  # not filled
        assert await cache.get_or_load("k", lambda: 2, near=False) == 1 and cache.near_cache_len == 0
        assert await cache.get_or_load("k", lambda: 2) == 1
        await held(cache, "k", 1)
        cid = unique("optout")
        tok = set_correlation_id(cid)
        try:
            for _ in range(3):
                assert await cache.get("k", near=False) == 1
        finally:
            correlation_id_var.reset(tok)
        await until(lambda: len(get_lines(server, cid)) == 3, "three RPCs for three near=False gets")
    finally:
        await cache.close()

    for bad in (dict(near_cache_max_entries=0), dict(near_cache_max_bytes=-1), dict(near_cache_max_age=0)):
        with pytest.raises(tr.InvalidArgumentError):
            Cache(CacheConfig(**bad), client=client)


async def test_ttl_is_honoured_from_when_the_read_was_sent(server) -> None:
    now = [1000.0]
    c = tr.ResilienceClient(server.addr, timeout=2.0, clock=lambda: now[0])
    cache = await live_cache(c)
    try:
        assert await cache.set("t", "v", ttl=30)
        await held(cache, "t", "v")
        hits0 = near_hits(cache)
        now[0] += 29.5  # the service's ttl (<= 30 s) counted from the read: still held
        assert await cache.get("t") == "v" and near_hits(cache) == hits0 + 1
        now[0] += 0.5  # 30 s after the read was sent: gone, whatever the service said later
        assert await cache.get("t") == "v"
        assert near_hits(cache) == hits0 + 1
    finally:
        await cache.close()
        await c.close()


async def test_invalidation_through_another_replica(start_server, start_redis) -> None:
    redis = start_redis()
    a = start_server("--redis-url", redis.url)
    b = start_server("--redis-url", redis.url)
    ca, cb = tr.ResilienceClient(a.addr, timeout=2.0), tr.ResilienceClient(b.addr, timeout=2.0)
    prefix = unique("fleet") + ":"
    writer = Cache(CacheConfig(key_prefix=prefix, near_cache=False), client=ca)
    reader = await live_cache(cb, prefix)

    async def seen(key: str, want) -> float:
        """Seconds until the reader first reads ``want``; it never reads the
        old value again afterwards."""
        t0 = time.monotonic()
        while await reader.get(key) != want:
            assert time.monotonic() - t0 < BOUND, f"{key}: {want!r} not seen within {BOUND}s"
            await asyncio.sleep(0)
        took = time.monotonic() - t0
        for _ in range(20):
            assert await reader.get(key) == want
        return took

    try:
        delays = []
        assert await writer.set("k", 0)
        for i in range(1, 101):
            await held(reader, "k", i - 1)
            t0 = time.monotonic()
            assert await writer.set("k", i)
            delays.append(time.monotonic() - t0 + await seen("k", i))  # from when the Set was sent
        q = statistics.quantiles(delays, n=100)
        print(f"\nnear cache staleness, Set through another replica (100 overwrites): "
              f"p50 {q[49] * 1000:.2f} ms, p99 {q[98] * 1000:.2f} ms, max {max(delays) * 1000:.2f} ms")
        assert max(delays) < BOUND

        await held(reader, "k", 100)
        assert await writer.delete("k")
        await seen("k", None)

        for k in ("org/1/vm", "org/2/db/x", "org/[x]", "orgs"):
            assert await writer.set(k, k)
            await held(reader, k, k)
        assert await writer.delete_pattern(r"org/[0-9]/*") == 2  # "*" crosses "/"
        await seen("org/1/vm", None)
        await seen("org/2/db/x", None)
        assert await reader.get("org/[x]") == "org/[x]" and await reader.get("orgs") == "orgs"
        assert await writer.delete_pattern(r"org/\[x\]") == 1
        await seen("org/[x]", None)
        assert await reader.get("orgs") == "orgs"
    finally:
        await reader.close()
        await writer.close()
        await ca.close()
        await cb.close()


async def test_stream_break_empties_and_bypasses(start_server, start_redis) -> None:
    redis = start_redis()
    srv = start_server("--redis-url", redis.url)
    c = tr.ResilienceClient(srv.addr, timeout=1.0, retry_interval=0.2)
    cache = await live_cache(c)
    try:
        assert await cache.set("k", "v")
        await held(cache, "k", "v")
        srv.kill()
        await until(lambda: not cache.near_cache_live, "near cache off after the replica died")
        assert cache.near_cache_len == 0
        # Degraded as the seed: misses, writes False, nothing raises.
        assert await cache.get("k") is None and await cache.set("k", "w") is False
        assert cache.near_cache_len == 0
        # Back on the same port and Redis: resubscribed (the backoff is
        # short this early), and filled again from the service.
        srv2 = start_server("--redis-url", redis.url, "--listen", srv.addr)
        await until(lambda: cache.near_cache_live, "resubscribed", 8.0)
        t0 = time.monotonic()
        while await cache.get("k") != "v" or cache.near_cache_len == 0:
            assert time.monotonic() - t0 < BOUND, "not filled again"
            await asyncio.sleep(0.01)
        assert srv2.addr == srv.addr
    finally:
        await cache.close()
        await c.close()


async def test_hung_replica_ends_the_stream(start_server) -> None:
    srv = start_server("--min-client-ping-interval", "500ms")
    c = tr.ResilienceClient(srv.addr, timeout=1.0, channel_options=[("grpc.keepalive_time_ms", 1000), ("grpc.keepalive_timeout_ms", 500)])
    cache = await live_cache(c)
    try:
        assert await cache.set("k", "v")
        await held(cache, "k", "v")
        srv.pause()  # accepts bytes, answers nothing, sends no invalidation
        took = await until(lambda: not cache.near_cache_live, "near cache off after the replica hung", 5.0)
        assert cache.near_cache_len == 0 and took > 0.4
    finally:
        srv.resume()
        await cache.close()
        await c.close()


async def test_close_ends_the_stream_task(client) -> None:
    before = asyncio.all_tasks()
    cache = Cache(CacheConfig(key_prefix=unique("close") + ":"), client=client)
    assert await cache.get("x") is None  # starts the stream lazily
    task = cache._watch
    assert task is not None and task in asyncio.all_tasks()
    await until(lambda: cache.near_cache_live, "live")
    await cache.close()
    assert task.done()
    # grpc's own bookkeeping of the cancelled stream ends a turn or two later.
    await until(lambda: not asyncio.all_tasks() - before, "every task gone after close()")
    assert not cache.near_cache_live and cache._watch is None
    assert await cache.set("x", 1) and await cache.get("x") == 1  # still answers, through the service
    assert cache._watch is None and cache.near_cache_len == 0
    await cache.close()  # idempotent


async def test_service_down_from_the_start(start_server) -> None:
    srv = start_server()
    addr = srv.addr
    srv.kill()
    c = tr.ResilienceClient(addr, timeout=0.3, retry_interval=0.2)
    cache = Cache(client=c)
    t0 = time.monotonic()
    try:
        assert await cache.connect() is False
        assert await cache.get("k") is None and await cache.set("k", 1) is False
        assert await cache.get_or_load("k", lambda: 5) == 5
        assert not cache.near_cache_live
    finally:
        await cache.close()
        await c.close()
    assert time.monotonic() - t0 < BOUND
