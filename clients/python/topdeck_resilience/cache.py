"""The fleet-wide cache (the seed's ``topdeck.common.cache``, same names),
backed by the resilience service's CacheService instead of a Redis of your
own: every process and replica sees the same entries (of your tenant).

Values are JSON. The cache degrades as the seed's did: when the service (or
its store) cannot be reached, a read is a miss (None), a write returns
False, ``get_or_load`` still runs the loader, and nothing raises. Only a
caller's mistake raises: a key the service rejects (InvalidArgumentError)
or a value that is not JSON (TypeError).

A :class:`Cache` has a near cache (on by default): it keeps the entries it
read in process memory and answers ``get`` from there while its
invalidation stream (``WatchInvalidations``) is in place, so that a value
overwritten or deleted through any replica is dropped fleet-wide. See
:class:`Cache` for its guarantees and :class:`CacheConfig` for its bounds.

Safe across threads and tasks.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
import random
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, TypeVar, Union, cast

import grpc
import grpc.aio

from ._gen import cache_pb2
from ._near import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, NO_OBJ, Fill, Near
from .client import ResilienceClient, _dur, _secs, get_default_client
from .errors import ClientClosedError, InvalidArgumentError, ResilienceError, ServiceUnavailableError

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
    near_cache: keep recently read entries in process memory, invalidated
        fleet-wide (True). False: every ``get`` asks the service and the
        Cache holds no stream.
    near_cache_max_entries: entries the near cache holds, least recently
        used out first (10 000).
    near_cache_max_bytes: bytes it holds: keys, values and 128 per entry
        (16 MiB); a larger entry is not kept.
    near_cache_max_age: seconds an entry is kept at most, on top of the TTL
        the service reported (None: the TTL only). A safety net for writes
        made around the service (e.g. redis-cli), which no invalidation
        announces.
    """

    address: Optional[str] = None
    default_ttl: int = 300
    key_prefix: str = ""
    timeout: Optional[float] = None
    tls: Any = None
    token: Optional[str] = None
    near_cache: bool = True
    near_cache_max_entries: int = DEFAULT_MAX_ENTRIES
    near_cache_max_bytes: int = DEFAULT_MAX_BYTES
    near_cache_max_age: Optional[float] = None


_MISS = object()

# The pause before watching again after the stream broke: doubling from
# WATCH_RETRY_MIN to WATCH_RETRY_MAX while it keeps failing, jittered (half
# to all of it); back to the minimum once a stream was in place.
WATCH_RETRY_MIN = 0.1
WATCH_RETRY_MAX = 5.0
# How long, beyond the client's timeout, a new stream may take to deliver
# its RESYNC (the service waits up to 2 s for a tenant's subscription).
_RESYNC_WAIT = 2.5
# How long close() waits for the stream's task to end once told to.
STOP_WAIT = 2.0

# JSON values a hit may share with every caller (the others are decoded
# anew on each hit: the caller's own copy).
_IMMUTABLE = (str, int, float, bool)

_KIND = cache_pb2.InvalidationKind
_KEY_KINDS = frozenset((_KIND.INVALIDATION_KIND_SET, _KIND.INVALIDATION_KIND_DELETE, _KIND.INVALIDATION_KIND_EXPIRED))


class Cache:
    """JSON values in the fleet-wide cache, with a near cache in front.

    ``await cache.connect()`` checks that the service answers (logging a
    warning when it does not; the cache still works, degraded, and recovers
    by itself) and starts the near cache's stream. ``await cache.close()``
    stops that stream (and awaits its task) and closes a client the cache
    created (from ``config.address``); a shared client is left open.

    The near cache. While its ``WatchInvalidations`` stream is in place
    (from the stream's first RESYNC message on), ``get`` answers from
    process memory the entries this Cache read before, bounded by
    ``near_cache_max_entries`` and ``near_cache_max_bytes`` (least recently
    used out first). An entry is dropped when the stream brings its
    invalidation, which every replica sends for a Set, Delete or
    DeletePattern through any of them (patterns matched with Redis's glob
    rules), when the TTL the service reported for it has passed (counted
    from when the read was sent, so it never outlives the stored value), and
    at once when this Cache writes it. A read that fills the near cache asks
    the service for a fresh read of its shared store (``GetRequest.fresh``:
    never a replica's in-memory copy), and is not kept when an invalidation
    of its key arrived while it was in flight. So once an invalidation has
    arrived, the value it replaced is never served; until then a ``get``
    may serve it (the staleness bound: docs/benchmarks.md). Values not
    found, or answered degraded, are not kept.

    When the stream breaks (the replica died, shut down, lost its own
    subscription, or this process fell behind; a hung replica is found by
    the client's keepalive), the near cache empties and every ``get`` asks
    the service until a new stream is in place: the Cache watches again
    after a pause doubling from 100 ms to 5 s, jittered. The stream is one
    task of this Cache, on the event loop that first called ``connect()``
    or ``get()``, ended and awaited by ``close()``; gets from other loops
    and threads share the same memory. ``get(key, near=False)`` opts one
    call out; ``CacheConfig(near_cache=False)`` the whole Cache (no task
    then).

    Safe across threads and tasks.
    """

    def __init__(self, config: Optional[CacheConfig] = None, *, client: Optional[ResilienceClient] = None) -> None:
        """``config``: None uses CacheConfig(). ``client``: the client to use
        when ``config.address`` is None (default: the process-wide one).
        Raises InvalidArgumentError for a near cache bound that is not
        positive. Starts nothing."""
        self.config = config or CacheConfig()
        cfg = self.config
        if cfg.near_cache:
            for name in ("near_cache_max_entries", "near_cache_max_bytes"):
                v = getattr(cfg, name)
                if not isinstance(v, int) or v <= 0:
                    raise InvalidArgumentError.local(name, f"must be a positive int, got {v!r}")
            if cfg.near_cache_max_age is not None and not cfg.near_cache_max_age > 0:
                raise InvalidArgumentError.local("near_cache_max_age", f"must be None or > 0 seconds, got {cfg.near_cache_max_age!r}")
        self._own: Optional[ResilienceClient] = None
        if cfg.address is not None:
            kw: Dict[str, Any] = {"tls": cfg.tls, "token": cfg.token}
            if cfg.timeout:
                kw["timeout"] = cfg.timeout
            self._own = ResilienceClient(cfg.address, **kw)
        self._client = client
        self._near: Optional[Near] = (
            Near(cfg.near_cache_max_entries, cfg.near_cache_max_bytes, cfg.near_cache_max_age) if cfg.near_cache else None
        )
        self._mu = threading.Lock()  # protects the fields below
        self._flights: Dict[Tuple[int, str], "asyncio.Future[Any]"] = {}
        self._watch: Optional["asyncio.Task[None]"] = None  # the stream's task
        self._watch_loop: Optional[asyncio.AbstractEventLoop] = None  # its loop
        self._live_event: Optional[asyncio.Event] = None  # set at each RESYNC; on _watch_loop
        self._call: Any = None  # the stream's call in flight; used on _watch_loop only
        self._closed = False
        self._hits = self._misses = self._sets = self._errors = self._near_hits = 0

    @property
    def client(self) -> ResilienceClient:
        """The client this cache calls."""
        return self._own or self._client or get_default_client()

    @property
    def near_cache_live(self) -> bool:
        """Whether the near cache answers now: its invalidation stream is in
        place (always False with ``near_cache=False``)."""
        return self._near is not None and self._near.live

    @property
    def near_cache_len(self) -> int:
        """How many entries the near cache holds now (expired ones not yet
        dropped included)."""
        return len(self._near) if self._near is not None else 0

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

    # -- the near cache's stream -------------------------------------------

    def _near_usable(self) -> Optional[Near]:
        """The near cache, when this call may use it, with its stream task
        running (started here, lazily, on the current loop); else None."""
        near = self._near
        if near is None or self._closed:
            return None
        loop = asyncio.get_running_loop()
        wl = self._watch_loop
        if wl is loop:
            return near
        with self._mu:
            if self._closed:
                return None
            wl = self._watch_loop
            if wl is not None and wl is not loop:
                if not wl.is_closed():
                    # Another loop holds the stream: share its memory only
                    # while that loop runs (and so follows the stream).
                    return near if wl.is_running() else None
                # That loop closed under its task: nothing follows the
                # stream any more. Forget it and watch from this loop.
                near.set_live(False)
                self._watch = self._watch_loop = self._live_event = None
            if self._watch is None:
                self._live_event = asyncio.Event()
                # A fresh context: the stream must not carry the correlation
                # id of whichever call happened to start it.
                self._watch = contextvars.Context().run(loop.create_task, self._run_watch())
                self._watch_loop = loop
        return near

    async def _run_watch(self) -> None:
        """Holds the invalidation stream until close(): watches, and after
        each break watches again after a backoff."""
        near = self._near
        assert near is not None
        pause = WATCH_RETRY_MIN
        warned = False
        try:
            while not self._closed:
                try:
                    was_live = await self._watch_once(near)
                except ClientClosedError:
                    return  # the shared client was closed: nothing to watch with
                except grpc.aio.AioRpcError as e:
                    was_live = False
                    if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) and not warned:
                        warned = True
                        logger.warning("cache: near cache off until the invalidation stream works: %s: %s", e.code().name, e.details())
                    else:
                        logger.debug("cache: invalidation stream: %s: %s", e.code().name, e.details())
                except Exception as e:  # never let the stream's task die of a surprise: bypass and retry
                    was_live = False
                    logger.warning("cache: invalidation stream failed: %r", e)
                if self._closed:
                    return
                if was_live:
                    pause = WATCH_RETRY_MIN
                    warned = False
                await asyncio.sleep(pause * (0.5 + 0.5 * random.random()))
                if not was_live:
                    pause = min(2 * pause, WATCH_RETRY_MAX)
        finally:
            near.set_live(False)

    async def _watch_once(self, near: Near) -> bool:
        """Holds one stream until it breaks; returns whether it was in place
        (its RESYNC arrived). The near cache answers only in between.
        Raises AioRpcError when the stream fails before its RESYNC.

        The stream is ended by cancelling the call (grpc's own way out of a
        read), never by cancelling a task inside a read: by close(), and
        when no RESYNC arrives in time."""
        client = self.client
        stubs = client._aio_stubs()
        call = stubs.cs.WatchInvalidations(cache_pb2.WatchInvalidationsRequest(), metadata=client._metadata())
        self._call = call
        wait = client.timeout + _RESYNC_WAIT
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            call.cancel()

        timer: Optional[asyncio.TimerHandle] = asyncio.get_running_loop().call_later(wait, expire)
        live = False
        try:
            while True:
                try:
                    resp = await call.read()
                except grpc.aio.AioRpcError as e:
                    if not live and not (timed_out or self._closed):
                        raise
                    logger.debug("cache: invalidation stream ended: %s: %s", e.code().name, e.details())
                    return live
                except asyncio.CancelledError:
                    # A call we cancelled (no RESYNC in time, or close())
                    # ends its read so; anything else cancels this task.
                    if not (timed_out or self._closed):
                        raise
                    if timed_out:
                        logger.debug("cache: no RESYNC on the invalidation stream within %.1fs", wait)
                    return live
                if resp is grpc.aio.EOF:
                    return live
                inv = resp.invalidation
                kind = inv.kind
                if kind in _KEY_KINDS:
                    near.invalidate_keys(inv.keys)
                elif kind == _KIND.INVALIDATION_KIND_DELETE_PATTERN:
                    near.invalidate_pattern(inv.pattern)
                elif kind == _KIND.INVALIDATION_KIND_RESYNC:
                    near.set_live(True)  # starts empty
                    if not live:
                        live = True
                        if timer is not None:
                            timer.cancel()
                            timer = None
                        ev = self._live_event
                        if ev is not None:
                            ev.set()
                else:  # a kind this SDK does not know: drop everything
                    near.clear()
        finally:
            if timer is not None:
                timer.cancel()
            self._call = None
            near.set_live(False)
            ev = self._live_event
            if ev is not None:
                ev.clear()
            call.cancel()

    async def _stop_watch(self) -> None:
        """Ends the stream's task and waits for it, on its loop: cancels the
        stream's call (the task then returns), or the task itself while it
        sleeps between streams."""
        with self._mu:
            task, loop = self._watch, self._watch_loop
            self._watch = self._watch_loop = self._live_event = None
        if task is None or loop is None:
            return

        async def stop() -> None:
            call = self._call
            if call is not None:
                call.cancel()
            else:
                task.cancel()
            done, _ = await asyncio.wait([task], timeout=STOP_WAIT)
            if not done:  # not seen to end by its call: cancel it outright
                task.cancel()
                await asyncio.wait([task], timeout=STOP_WAIT)

        if loop is asyncio.get_running_loop():
            await stop()
            return
        if loop.is_closed():
            return  # the task died with its loop
        try:
            fut = asyncio.run_coroutine_threadsafe(stop(), loop)
        except RuntimeError:
            return
        await asyncio.wait_for(asyncio.wrap_future(fut), 3 * STOP_WAIT)

    async def connect(self) -> bool:
        """Checks that the service answers; returns whether it did. Starts
        the near cache's stream and waits (up to the client's timeout) for it
        to be in place. Never raises for an unreachable service."""
        self._near_usable()
        r = await self._rpc("GetStats", cache_pb2.GetStatsRequest())
        if r is None:
            logger.warning("cache: resilience service %s not reachable; reads miss until it is", self.client.address)
        else:
            ev = self._live_event
            if ev is not None and self._watch_loop is asyncio.get_running_loop():
                try:
                    await asyncio.wait_for(ev.wait(), self.client.timeout)
                except asyncio.TimeoutError:
                    pass
        return r is not None

    async def close(self) -> None:
        """Stops the near cache's stream and waits for its task, empties the
        near cache, and closes the client this cache created, if any. The
        Cache still answers afterwards (through the service, without a near
        cache) while its client is open. Idempotent."""
        with self._mu:
            self._closed = True
        await self._stop_watch()
        if self._near is not None:
            self._near.set_live(False)
        if self._own is not None:
            await self._own.close()

    async def __aenter__(self) -> "Cache":
        """``async with Cache(...) as cache:`` connects, and closes at the end."""
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        """Closes the cache (see :meth:`close`)."""
        await self.close()

    def _forget(self, keys: Optional[List[str]] = None, pattern: Optional[str] = None) -> None:
        """Drops from the near cache what a write of this Cache changed."""
        near = self._near
        if near is None:
            return
        if pattern is not None:
            near.invalidate_pattern(pattern)
        elif keys:
            near.invalidate_keys(keys)

    # -- reads and writes -------------------------------------------------

    async def get(self, key: str, *, near: bool = True) -> Any:
        """Returns the value of ``key``, or None when there is none, the
        service is degraded or unreachable, or the stored bytes are not JSON.
        From the near cache when it holds the key (see :class:`Cache`);
        ``near=False`` asks the service, neither reading nor filling the
        near cache. Raises InvalidArgumentError for a key the service
        rejects."""
        k = self._key(key)
        fill: Optional[Fill] = None
        nc = self._near_usable() if near else None
        if nc is not None:
            now = self.client._clock()
            e = nc.get(k, now)
            if e is not None:
                self._hits += 1
                self._near_hits += 1
                # The caller's own copy; an immutable value is shared.
                return e.obj if e.obj is not NO_OBJ else json.loads(e.value)
            fill = nc.begin(k, now)  # None unless the stream is in place
        try:
            # A read that may fill the near cache reads the shared store
            # itself: a replica's memory may not have the invalidation this
            # process already has.
            r = await self._rpc("Get", cache_pb2.GetRequest(key=k, fresh=fill is not None))
        except BaseException:
            if nc is not None:
                nc.abandon(fill)
            raise
        if r is None or not r.found or r.degraded:
            if nc is not None:
                nc.abandon(fill)
            self._misses += 1
            return None
        try:
            v = json.loads(r.value)
        except ValueError:
            if nc is not None:
                nc.abandon(fill)
            logger.warning("cache: value of %r is not JSON; treated as a miss", key)
            self._misses += 1
            return None
        if fill is not None:
            obj = v if v is None or isinstance(v, _IMMUTABLE) else NO_OBJ
            nc.commit(fill, r.value, _secs(r.ttl) if r.HasField("ttl") else None, obj)  # type: ignore[union-attr]
        self._hits += 1
        return v

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value (False when unreachable). Asks the
        service."""
        r = await self._rpc("Get", cache_pb2.GetRequest(key=self._key(key)))
        return bool(r is not None and r.found)

    async def set(self, key: str, value: Any, ttl: Optional[int] = None) -> bool:
        """Stores ``value`` (JSON) under ``key`` for ``ttl`` seconds (None:
        ``default_ttl``). Returns True when stored, False when the service is
        degraded or unreachable. Drops the key from this Cache's near cache
        whatever the answer. Raises TypeError for a value that is not JSON,
        InvalidArgumentError for a rejected key or ttl."""
        data = json.dumps(value).encode()
        t = self.config.default_ttl if ttl is None else ttl
        k = self._key(key)
        req = cache_pb2.SetRequest(key=k, value=data)
        if t:
            req.ttl.CopyFrom(_dur(t))
        try:
            r = await self._rpc("Set", req)
        finally:
            # Whatever the answer (the write may have happened), the next
            # get of this process reads it from the service.
            self._forget([k])
        ok = bool(r is not None and r.stored)
        if ok:
            self._sets += 1
        return ok

    async def delete(self, key: str) -> bool:
        """Deletes ``key``; True when it existed (False when unreachable).
        Drops it from the near cache whatever the answer."""
        k = self._key(key)
        try:
            r = await self._rpc("Delete", cache_pb2.DeleteRequest(keys=[k]))
        finally:
            self._forget([k])
        return bool(r is not None and r.deleted > 0)

    async def delete_pattern(self, pattern: str) -> int:
        """Deletes every key matching the glob ``pattern`` (Redis's rules:
        ``*`` (which crosses ``/``), ``?``, ``[...]`` with ``^`` and ranges,
        ``\\`` escapes; the key prefix is prepended); returns how many (0 when
        unreachable). Drops the matching keys from the near cache whatever
        the answer."""
        p = self._key(pattern)
        try:
            r = await self._rpc("DeletePattern", cache_pb2.DeletePatternRequest(pattern=p))
        finally:
            self._forget(pattern=p)
        return int(r.deleted) if r is not None else 0

    async def clear_pattern(self, pattern: str) -> int:
        """The seed's name of :meth:`delete_pattern`."""
        return await self.delete_pattern(pattern)

    async def stats(self) -> Dict[str, Any]:
        """Fleet-wide statistics: ``enabled``, ``hits``, ``misses``, ``sets``,
        ``deletes``, ``errors``, ``hit_ratio``, ``keys``, ``degraded``, and
        ``local`` (this Cache object's own counts: ``hits`` (near hits
        included), ``misses``, ``sets``, ``errors``, ``near_hits``,
        ``near_entries``, ``near_bytes``, ``near_live``). With the service
        unreachable: ``{"enabled": True, "degraded": True, "local": ...}``."""
        near = self._near
        local = {
            "hits": self._hits,
            "misses": self._misses,
            "sets": self._sets,
            "errors": self._errors,
            "near_hits": self._near_hits,
            "near_entries": len(near) if near is not None else 0,
            "near_bytes": near.bytes if near is not None else 0,
            "near_live": self.near_cache_live,
        }
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
        unreachable). Asks the service."""
        r = await self._rpc("Get", cache_pb2.GetRequest(key=self._key(key)))
        if r is None or not r.found or not r.HasField("ttl"):
            return None
        return _secs(r.ttl)

    async def get_or_load(self, key: str, loader: Callable[[], Any], ttl: Optional[int] = None, *, near: bool = True) -> Any:
        """Returns the cached value of ``key`` (read as ``get(key,
        near=near)``), else runs ``loader()`` (sync or async), stores its
        result and returns it. Concurrent calls for one key in this process
        (and event loop) share one load. With the service unreachable the
        loader still runs and its value is returned. Raises the loader's
        exception (to every caller sharing that load)."""
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
            v = await self.get(key, near=near)
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
