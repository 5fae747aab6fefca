"""The near cache's model: a bounded, LRU, in-process copy of recently read
cache entries, kept right by the service's invalidation stream. A port of
the Go ``cache.Near`` (cache/near.go) and of its glob matcher
(cache/match.go), with time as a parameter; the stream itself and the RPCs
live in :mod:`topdeck_resilience.cache`.

Nothing here is public API. Safe across threads; starts nothing.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from typing import Dict, List, Optional, Pattern, Sequence, Tuple

DEFAULT_MAX_ENTRIES = 10_000
"""Entries a near cache holds unless configured otherwise (as the Go SDK)."""
DEFAULT_MAX_BYTES = 16 << 20
"""Bytes a near cache holds (keys, values, OVERHEAD per entry) unless configured otherwise."""
OVERHEAD = 128
"""The bookkeeping charged per entry against the byte bound (as the Go SDK)."""


# ---------------------------------------------------------------------------
# Redis glob matching (stringmatchlen), byte by byte


def _class_regex(members: Sequence[int]) -> bytes:
    """A regex of one byte out of ``members`` (sorted, distinct)."""
    if not members:
        return rb"(?!)"  # "[]": matches nothing
    if len(members) == 256:
        return rb"."
    out = [b"["]
    i = 0
    while i < len(members):
        j = i
        while j + 1 < len(members) and members[j + 1] == members[j] + 1:
            j += 1
        out.append(b"\\x%02x" % members[i])
        if j > i:
            out.append(b"-\\x%02x" % members[j])
        i = j + 1
    out.append(b"]")
    return b"".join(out)


def _tokens(pattern: bytes) -> List[Optional[bytes]]:
    """Splits a Redis glob into tokens: None for ``*``, else the regex of the
    one byte the token matches. The rules are Redis's (and cache/match.go's):
    ``?`` any byte; ``\\x`` the byte x (a trailing ``\\`` is literal);
    ``[...]`` a class with ``^`` negating, ``\\`` escaping, ``x-y`` a range
    (reversed ranges swapped) when at least three bytes remain, and an open
    class running to the end of the pattern."""
    toks: List[Optional[bytes]] = []
    p, n = 0, len(pattern)
    while p < n:
        c = pattern[p]
        if c == 0x2A:  # *
            if not toks or toks[-1] is not None:
                toks.append(None)
            p += 1
        elif c == 0x3F:  # ?
            toks.append(rb".")
            p += 1
        elif c == 0x5C:  # backslash
            if p + 1 < n:
                toks.append(b"\\x%02x" % pattern[p + 1])
                p += 2
            else:
                toks.append(rb"\x5c")
                p += 1
        elif c == 0x5B:  # [
            i = p + 1
            negate = i < n and pattern[i] == 0x5E  # ^
            if negate:
                i += 1
            members = set()
            while i < n:
                if pattern[i] == 0x5C and n - i >= 2:
                    members.add(pattern[i + 1])
                    i += 2
                elif pattern[i] == 0x5D:  # ]
                    i += 1
                    break
                elif n - i >= 3 and pattern[i + 1] == 0x2D:  # x-y
                    lo, hi = sorted((pattern[i], pattern[i + 2]))
                    members.update(range(lo, hi + 1))
                    i += 3
                else:
                    members.add(pattern[i])
                    i += 1
            if negate:
                members = set(range(256)) - members
            toks.append(_class_regex(sorted(members)))
            p = i
        else:
            toks.append(b"\\x%02x" % c)
            p += 1
    return toks


class Glob:
    """A compiled Redis glob (the MATCH / DeletePattern rules of
    cache/match.go): ``*`` matches any bytes, ``/`` included; ``?`` one
    byte; ``[...]`` classes with ``^`` and ranges; ``\\`` escapes. Not
    fnmatch: ``*`` crosses ``/`` and a malformed pattern is read as Redis
    reads it, never an error.

    The pattern is split at its ``*`` runs into fixed-width segments, each a
    compiled regex: the first must match at the start, the last at the end,
    and the middle ones are found leftmost in order, which is exact for
    fixed-width segments and linear in the key (no backtracking blow-up).
    Immutable; safe across threads.
    """

    __slots__ = ("_whole", "_first", "_last", "_middle")

    def __init__(self, pattern: str) -> None:
        toks = _tokens(pattern.encode())
        segs: List[List[bytes]] = [[]]
        for t in toks:
            if t is None:
                segs.append([])
            else:
                segs[-1].append(t)

        def compile_(seg: List[bytes]) -> Tuple[Pattern[bytes], int]:
            return re.compile(b"".join(seg), re.DOTALL), len(seg)

        self._whole: Optional[Tuple[Pattern[bytes], int]] = None
        self._first: Tuple[Pattern[bytes], int] = compile_(segs[0])
        self._last: Tuple[Pattern[bytes], int] = compile_(segs[-1])
        self._middle: List[Tuple[Pattern[bytes], int]] = [compile_(s) for s in segs[1:-1] if s]
        if len(segs) == 1:
            self._whole = self._first

    def match(self, key: str) -> bool:
        """Whether ``key`` (as UTF-8 bytes) matches the pattern."""
        b = key.encode()
        if self._whole is not None:
            rx, width = self._whole
            return len(b) == width and rx.fullmatch(b) is not None
        (frx, fw), (lrx, lw) = self._first, self._last
        end = len(b) - lw
        if end < fw:
            return False
        if fw and frx.match(b) is None:
            return False
        if lw and lrx.fullmatch(b, end) is None:
            return False
        pos = fw
        for rx, _ in self._middle:
            m = rx.search(b, pos, end)
            if m is None:
                return False
            pos = m.end()
        return True


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: str) -> Glob:
    """The compiled :class:`Glob` of ``pattern`` (cached)."""
    return Glob(pattern)


def glob_match(pattern: str, key: str) -> bool:
    """Whether ``key`` matches the Redis glob ``pattern`` (see :class:`Glob`)."""
    return compile_glob(pattern).match(key)


# ---------------------------------------------------------------------------
# The near cache


class Fill:
    """A read of the service in flight that may fill a :class:`Near` (see
    Near.begin)."""

    __slots__ = ("key", "start", "epoch", "stale")

    def __init__(self, key: str, start: float, epoch: int) -> None:
        self.key = key
        self.start = start
        self.epoch = epoch
        self.stale = False  # an invalidation of key arrived; guarded by Near._mu


NO_OBJ = object()
"""Entry.obj of an entry whose value must be decoded on every hit."""


class Entry:
    """One entry: ``value`` (the bytes read), ``obj`` (its decoded form when
    immutable, so shared by every hit; else NO_OBJ), ``expire_at`` (None:
    no expiry) and ``size`` (charged against the byte bound)."""

    __slots__ = ("value", "obj", "expire_at", "size")

    def __init__(self, value: bytes, obj: object, expire_at: Optional[float], size: int) -> None:
        self.value = value
        self.obj = obj
        self.expire_at = expire_at
        self.size = size


class Near:
    """A bounded in-process copy of recently read entries (raw bytes by
    key), least recently used out first past ``max_entries`` or
    ``max_bytes`` (keys, values and OVERHEAD per entry).

    It answers only while live, that is while its owner follows the
    invalidation stream without a gap: ``set_live(False)`` (the stream
    broke) empties it and makes it answer nothing; ``set_live(True)`` (a
    RESYNC arrived) starts it empty. An entry is dropped when an
    invalidation names it, when the TTL its read reported has passed
    (counted from when the read began, so it never outlives the stored
    entry), and after ``max_age`` when set.

    A read that may fill it is bracketed by ``begin`` and ``commit`` (or
    ``abandon``): an invalidation of the key, or a gap, arriving while the
    read is in flight makes ``commit`` keep nothing. Time (``now``, seconds
    on a monotonic clock) is a parameter. Safe across threads.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_age: Optional[float] = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._mu = threading.Lock()  # protects the fields below
        self._live = False
        self._epoch = 0  # advanced when emptied: older fills are void
        self._items: "OrderedDict[str, Entry]" = OrderedDict()  # last: most recently used
        self._bytes = 0
        self._fills: Dict[str, List[Fill]] = {}

    def get(self, key: str, now: float) -> Optional[Entry]:
        """The entry under ``key`` when live and held unexpired at ``now``
        (then the most recently used), else None."""
        with self._mu:
            if not self._live:
                return None
            e = self._items.get(key)
            if e is None:
                return None
            if e.expire_at is not None and now >= e.expire_at:
                self._remove_locked(key)
                return None
            self._items.move_to_end(key)
            return e

    def begin(self, key: str, now: float) -> Optional[Fill]:
        """Registers a read of ``key`` starting at ``now`` (before it is
        sent); None when not live (nothing read then may be kept)."""
        with self._mu:
            if not self._live:
                return None
            f = Fill(key, now, self._epoch)
            self._fills.setdefault(key, []).append(f)
            return f

    def commit(self, f: Optional[Fill], value: bytes, ttl: Optional[float], obj: object = NO_OBJ) -> bool:
        """Ends ``f`` keeping ``value`` (and ``obj``, its decoded form when
        immutable), which expires ``ttl`` seconds after the read began (None:
        no expiry), unless an invalidation of its key or a gap arrived since
        ``begin``; returns whether it was kept."""
        if f is None:
            return False
        size = len(f.key.encode()) + len(value) + OVERHEAD
        expire_at = f.start + ttl if ttl is not None and ttl > 0 else None
        if self.max_age is not None:
            limit = f.start + self.max_age
            if expire_at is None or limit < expire_at:
                expire_at = limit
        with self._mu:
            self._unregister_locked(f)
            if f.stale or f.epoch != self._epoch or not self._live or size > self.max_bytes:
                return False
            if f.key in self._items:
                self._remove_locked(f.key)
            while self._items and (self._bytes + size > self.max_bytes or len(self._items) >= self.max_entries):
                self._remove_locked(next(iter(self._items)))
            self._items[f.key] = Entry(value, obj, expire_at, size)
            self._bytes += size
            return True

    def abandon(self, f: Optional[Fill]) -> None:
        """Ends ``f`` keeping nothing (the read failed or missed)."""
        if f is None:
            return
        with self._mu:
            self._unregister_locked(f)

    def invalidate_keys(self, keys: Sequence[str]) -> None:
        """Drops ``keys`` and makes the reads of them in flight keep nothing."""
        with self._mu:
            for k in keys:
                if k in self._items:
                    self._remove_locked(k)
                for f in self._fills.pop(k, ()):
                    f.stale = True

    def invalidate_pattern(self, pattern: str) -> None:
        """Drops every key matching the Redis glob ``pattern`` and makes the
        reads of them in flight keep nothing."""
        g = compile_glob(pattern)
        with self._mu:
            for k in [k for k in self._items if g.match(k)]:
                self._remove_locked(k)
            for k in [k for k in self._fills if g.match(k)]:
                for f in self._fills.pop(k):
                    f.stale = True

    def clear(self) -> None:
        """Empties it (it stays live or not); reads in flight keep nothing."""
        with self._mu:
            self._clear_locked()

    def set_live(self, live: bool) -> None:
        """Empties it and sets whether it answers."""
        with self._mu:
            self._clear_locked()
            self._live = live

    @property
    def live(self) -> bool:
        """Whether it answers."""
        return self._live

    def __len__(self) -> int:
        with self._mu:
            return len(self._items)

    @property
    def bytes(self) -> int:
        """The bytes charged against the byte bound."""
        with self._mu:
            return self._bytes

    def _clear_locked(self) -> None:
        self._epoch += 1
        self._items.clear()
        self._bytes = 0
        self._fills.clear()  # void by the epoch

    def _remove_locked(self, key: str) -> None:
        e = self._items.pop(key)
        self._bytes -= e.size

    def _unregister_locked(self, f: Fill) -> None:
        fs = self._fills.get(f.key)
        if fs is None:
            return
        try:
            fs.remove(f)
        except ValueError:
            pass
        if not fs:
            del self._fills[f.key]
