"""Cache against a real resilienced's CacheService."""

import asyncio

import pytest

import topdeck_resilience as tr
from topdeck_resilience.cache import Cache, CacheConfig, cached, get_default_cache, set_default_cache
from conftest import unique


@pytest.fixture()
async def cache(client):
    c = Cache(CacheConfig(key_prefix=unique("t") + ":"), client=client)
    yield c
    await c.close()


async def test_json_round_trip_ttl_delete(cache: Cache) -> None:
    assert await cache.connect()
    value = {"org": "org-42", "projects": ["a", "b"], "n": 2, "ok": True, "none": None}
    assert await cache.get("p") is None
    assert await cache.set("p", value, ttl=60)
    assert await cache.get("p") == value
    assert await cache.exists("p")
    ttl = await cache.ttl("p")
    assert ttl is not None and 0 < ttl <= 60
    assert await cache.set("d", [1, 2])  # default_ttl
    d_ttl = await cache.ttl("d")
    assert d_ttl is not None and 290 < d_ttl <= 300
    assert await cache.delete("p") and not await cache.delete("p")
    assert await cache.ttl("p") is None and not await cache.exists("p")
    with pytest.raises(TypeError):
        await cache.set("bad", object())


async def test_patterns_and_stats(cache: Cache) -> None:
    for i in range(3):
        assert await cache.set(f"res:{i}", i)
    assert await cache.set("other", 1)
    assert await cache.delete_pattern("res:*") == 3
    assert await cache.clear_pattern("other") == 1
    await cache.get("missing")
    s = await cache.stats()
    assert s["enabled"] and not s["degraded"] and s["sets"] >= 4 and s["misses"] >= 1
    assert s["local"]["sets"] == 4 and s["local"]["misses"] == 1
    assert (await cache.get_stats()).keys() == s.keys()


async def test_rejected_key_raises(cache: Cache) -> None:
    with pytest.raises(tr.InvalidArgumentError):
        await cache.get("k" * 300)


async def test_get_or_load_loads_once_per_key(cache: Cache) -> None:
    loads = 0

    async def loader():
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.05)
        return {"v": loads}

    got = await asyncio.gather(*(cache.get_or_load("once", loader, ttl=30) for _ in range(20)))
    assert loads == 1 and all(g == {"v": 1} for g in got)
    assert await cache.get_or_load("once", loader) == {"v": 1} and loads == 1
    assert await cache.get_or_load("sync", lambda: 5) == 5

    async def failing():
        raise RuntimeError("load failed")

    with pytest.raises(RuntimeError):
        await asyncio.gather(*(cache.get_or_load("fail", failing) for _ in range(3)))


async def test_cached_decorator(client) -> None:
    class Discoverer:
        def __init__(self):
            self._cache = Cache(CacheConfig(key_prefix=unique("disc") + ":"), client=client)
            self.calls = 0

        @cached(ttl=60, key_prefix="discover")
        async def discover(self, sub: str, kind: str = "vm"):
            self.calls += 1
            return [sub, kind]

    d = Discoverer()
    assert await d.discover("sub-1") == ["sub-1", "vm"]
    assert await d.discover("sub-1") == ["sub-1", "vm"] and d.calls == 1
    assert await d.discover("sub-1", kind="db") == ["sub-1", "db"] and d.calls == 2
    assert await d._cache.get("discover:sub-1") == ["sub-1", "vm"]
    await d._cache.close()

    explicit = Cache(CacheConfig(key_prefix=unique("exp") + ":"), client=client)
    n = 0

    @cached(key=lambda x: f"sq/{x}", cache=explicit)
    async def square(x):
        nonlocal n
        n += 1
        return x * x

    assert await square(3) == 9 and await square(3) == 9 and n == 1
    assert await explicit.get("sq/3") == 9
    await explicit.close()

    prev = set_default_cache(Cache(CacheConfig(key_prefix=unique("def") + ":"), client=client))
    try:
        @cached()
        async def plain(x):
            return x + 1

        assert await plain(1) == 2
        assert await get_default_cache().get("plain:1") == 2
    finally:
        await set_default_cache(prev).close()

    with pytest.raises(TypeError):
        cached()(lambda: 1)


async def test_cache_with_its_own_address(server) -> None:
    c = Cache(CacheConfig(address=server.addr, default_ttl=10, key_prefix=unique("own") + ":", timeout=1.0))
    try:
        assert await c.set("a", "b") and await c.get("a") == "b"
        assert c.client.address == server.addr
    finally:
        await c.close()
    assert c.client.closed
