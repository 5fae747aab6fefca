"""The fleet-wide cache (the seed's ``topdeck.common.cache``, same names),
backed by the resilience service's CacheService instead of a Redis of your
own: every process and replica sees the same entries (of your tenant).

Values are JSON. The cache degrades as the seed's did: when the service (or
its store) cannot be reached, a read is a miss (None), a write returns
False, ``get_or_load`` still runs the loader, and nothing raises. Only a
caller's mistake raises: a key the service rejects (InvalidArgumentError)
or a value that is not JSON (TypeError).

Safe across threads and tasks.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple, TypeVar, Union, cast

from ._gen import cache_pb2
from .client import ResilienceClient, _dur, _secs, get_default_client
from .errors import InvalidArgumentError, ResilienceError, ServiceUnavailableError

__all__ = ["CacheConfig", "Cache", "cached", "get_default_cache", "set_default_cache"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CacheConfig:
    """Where and how a :class:`Cache` stores entries.

    address: the resilience service (``host:port``); None uses the ``client``
        given to Cache, else the process-wide default client.
    default_ttl: seconds an entry lives when ``set`` gets no ttl (300).
    key_prefix: prepended to every key and pattern ("").
    timeout: seconds per RPC for a client this config creates (None: the
        client default, 0.25).
    tls, token: as ResilienceClient's, for a client this config creates.
    """

    address: Optional[str] = None
    default_ttl: int = 300
    key_prefix: str = ""
    timeout: Optional[float] = None
    tls: Any = None
    token: Optional[str] = None


_MISS = object()


class Cache:
    """JSON values in the fleet-wide cache.

    ``await cache.connect()`` checks that the service answers (logging a
    warning when it does not; the cache still works, degraded, and recovers
    by itself). ``await cache.close()`` closes a client the cache created
    (from ``config.address``); a shared client is left open.
    """

    def __init__(self, config: Optional[CacheConfig] = None, *, client: Optional[ResilienceClient] = None) -> None:
        """``config``: None uses CacheConfig(). ``client``: the client to use
        when ``config.address`` is None (default: the process-wide one)."""
        self.config = config or CacheConfig()
        self._own: Optional[ResilienceClient] = None
        if self.config.address is not None:
            kw: Dict[str, Any] = {"tls": self.config.tls, "token": self.config.token}
            if self.config.timeout:
                kw["timeout"] = self.config.timeout
            self._own = ResilienceClient(self.config.address, **kw)
        self._client = client
        self._mu = threading.Lock()  # protects _flights
        self._flights: Dict[Tuple[int, str], "asyncio.Future[Any]"] = {}
        self._hits = self._misses = self._sets = self._errors = 0

    @property
    def client(self) -> ResilienceClient:
        """The client this cache calls."""
        return self._own or self._client or get_default_client()

    def _key(self, key: str) -> str:
        return f"{self.config.key_prefix}{key}"

    async def _rpc(self, method: str, req: Any) -> Any:
        """Calls the CacheService; returns None when it cannot be reached
        (logged), raises InvalidArgumentError for a rejected key."""
        try:
            return await self.client._call("cs", method, req)
        except InvalidArgumentError:
            raise
        except ServiceUnavailableError as e:
            logger.debug("cache %s: service unreachable: %s", method, e)
        except ResilienceError as e:
            logger.warning("cache %s failed: %s", method, e)
        self._errors += 1
        return None

    async def connect(self) -> bool:
        """Checks that the service answers; returns whether it did. Never
        raises for an unreachable service."""
        r = await self._rpc("GetStats", cache_pb2.GetStatsRequest())
        if r is None:
            logger.warning("cache: resilience service %s not reachable; reads miss until it is", self.client.address)
        return r is not None

    async def close(self) -> None:
        """Closes the client this cache created, if any."""
        if self._own is not None:
            await self._own.close()

    async def get(self, key: str) -> Any:
        """Returns the value of ``key``, or None when there is none, the
        service is degraded or unreachable, or the stored bytes are not JSON.
        Raises InvalidArgumentError for a key the service rejects."""
        r = await self._rpc("Get", cache_pb2.GetRequest(key=self._key(key)))
        if r is None or not r.found:
            self._misses += 1
            return None
        try:
            v = json.loads(r.value)
        except ValueError:
            logger.warning("cache: value of %r is not JSON; treated as a miss", key)
            self._misses += 1
            return None
        self._hits += 1
        return v

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value (False when unreachable)."""
        r = await self._rpc("Get", cache_pb2.GetRequest(key=self._key(key)))
        return bool(r is not None and r.found)

    async def set(self, key: str, value: Any, ttl: Optional[int] = None) -> bool:
        """Stores ``value`` (JSON) under ``key`` for ``ttl`` seconds (None:
        ``default_ttl``). Returns True when stored, False when the service is
        degraded or unreachable. Raises TypeError for a value that is not
        JSON, InvalidArgumentError for a rejected key or ttl."""
        data = json.dumps(value).encode()
        t = self.config.default_ttl if ttl is None else ttl
        req = cache_pb2.SetRequest(key=self._key(key), value=data)
        if t:
            req.ttl.CopyFrom(_dur(t))
        r = await self._rpc("Set", req)
        ok = bool(r is not None and r.stored)
        if ok:
            self._sets += 1
        return ok

    async def delete(self, key: str) -> bool:
        """Deletes ``key``; True when it existed (False when unreachable)."""
        r = await self._rpc("Delete", cache_pb2.DeleteRequest(keys=[self._key(key)]))
        return bool(r is not None and r.deleted > 0)

    async def delete_pattern(self, pattern: str) -> int:
        """Deletes every key matching the glob ``pattern`` (``*``, ``?``,
        ``[...]``; the key prefix is prepended); returns how many (0 when
        unreachable)."""
        r = await self._rpc("DeletePattern", cache_pb2.DeletePatternRequest(pattern=self._key(pattern)))
        return int(r.deleted) if r is not None else 0

    async def clear_pattern(self, pattern: str) -> int:
        """The seed's name of :meth:`delete_pattern`."""
        return await self.delete_pattern(pattern)

    async def stats(self) -> Dict[str, Any]:
        """Fleet-wide statistics: ``enabled``, ``hits``, ``misses``, ``sets``,
        ``deletes``, ``errors``, ``hit_ratio``, ``keys``, ``degraded``, and
        ``local`` (this Cache object's own counts). With the service
        unreachable: ``{"enabled": True, "degraded": True, "local": ...}``."""
        local = {"hits": self._hits, "misses": self._misses, "sets": self._sets, "errors": self._errors}
        r = await self._rpc("GetStats", cache_pb2.GetStatsRequest())
        if r is None:
            return {"enabled": True, "degraded": True, "local": local}
        return {
            "enabled": True,
            "hits": r.hits,
            "misses": r.misses,
            "sets": r.sets,
            "deletes": r.deletes,
            "errors": r.errors,
            "hit_ratio": r.hit_ratio,
            "keys": r.keys,
            "degraded": r.degraded,
            "local": local,
        }

    async def get_stats(self) -> Dict[str, Any]:
        """The seed's name of :meth:`stats`."""
        return await self.stats()

    async def ttl(self, key: str) -> Optional[float]:
        """Seconds ``key`` has left to live, or None (missing, no expiry,
        unreachable)."""
        r = await self._rpc("Get", cache_pb2.GetRequest(key=self._key(key)))
        if r is None or not r.found or not r.HasField("ttl"):
            return None
        return _secs(r.ttl)

    async def get_or_load(self, key: str, loader: Callable[[], Any], ttl: Optional[int] = None) -> Any:
        """Returns the cached value of ``key``, else runs ``loader()`` (sync
        or async), stores its result and returns it. Concurrent calls for one
        key in this process (and event loop) share one load. With the service
        unreachable the loader still runs and its value is returned. Raises
        the loader's exception (to every caller sharing that load)."""
        loop = asyncio.get_running_loop()
        fk = (id(loop), key)
        with self._mu:
            fut = self._flights.get(fk)
            leader = fut is None
            if leader:
                fut = self._flights[fk] = loop.create_future()
        assert fut is not None
        if not leader:
            return await asyncio.shield(fut)
        try:
            v = await self.get(key)
            if v is None:
                v = loader()
                if inspect.isawaitable(v):
                    v = await v
                await self.set(key, v, ttl=ttl)
            fut.set_result(v)
            return v
        except BaseException as e:
            if not fut.done():
                fut.set_exception(e)
                fut.exception()  # retrieved: no "never retrieved" warning without followers
            raise
        finally:
            with self._mu:
                self._flights.pop(fk, None)


_default_mu = threading.Lock()
_default_cache: Optional[Cache] = None


def get_default_cache() -> Cache:
    """The process-wide Cache over the default client (created on first use)."""
    global _default_cache
    with _default_mu:
        if _default_cache is None:
            _default_cache = Cache()
        return _default_cache


def set_default_cache(cache: Optional[Cache]) -> Optional[Cache]:
    """Replaces the process-wide Cache (None: a new one on next use) and
    returns the previous one."""
    global _default_cache
    with _default_mu:
        prev, _default_cache = _default_cache, cache
        return prev


def cached(
    ttl: Optional[int] = None,
    key_prefix: Optional[str] = None,
    *,
    key: Optional[Callable[..., str]] = None,
    cache: Optional[Cache] = None,
) -> Callable[[F], F]:
    """Caches an async function's (JSON) results::

        @cached(ttl=300, key_prefix="discover")
        async def discover_resources(subscription_id: str): ...

    The cache is ``cache=``, else the ``_cache`` attribute of the first
    argument (the seed's methods: ``self._cache``), else the process-wide
    default cache. The key is ``key(*args, **kwargs)`` when given, else
    ``key_prefix`` (default: the function's name) and the arguments joined by
    ":" (without ``self`` when the cache came from it). A None result is not
    remembered. Loads of one key share one call (Cache.get_or_load).
    """

    def decorator(func: F) -> F:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"cached: {getattr(func, '__qualname__', func)!r} must be an async function")

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            c = cache
            key_args = args
            if c is None and args and isinstance(getattr(args[0], "_cache", None), Cache):
                c = args[0]._cache
                key_args = args[1:]
            if c is None:
                c = get_default_cache()
            if key is not None:
                k = key(*args, **kwargs)
            else:
                parts = [key_prefix or func.__name__]
                parts.extend(str(a) for a in key_args)
                parts.extend(f"{n}={v}" for n, v in sorted(kwargs.items()))
                k = ":".join(parts)
            return await c.get_or_load(k, lambda: func(*args, **kwargs), ttl=ttl)

        return cast(F, wrapper)

    return decorator
