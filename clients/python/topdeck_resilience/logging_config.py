"""Structured logging with correlation ids (the seed's
``topdeck.common.logging_config``, same names).

The current correlation id lives in a :class:`contextvars.ContextVar`, so it
follows each asyncio task and thread on its own. Besides appearing in every
log line, it goes out as ``x-correlation-id`` metadata on every RPC the SDK
makes, so the resilience service's log line for the call carries it too.

:class:`LoggingContext` keeps its fields in a ContextVar as well (the seed
swapped the process-wide record factory, which leaked context between
concurrent tasks); one record factory, installed once, reads them.

Everything here is safe across threads and tasks.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import threading
from contextvars import ContextVar, Token
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Dict, MutableMapping, Optional, Tuple, Type

__all__ = [
    "StructuredFormatter",
    "ContextLogger",
    "LoggingContext",
    "setup_logging",
    "get_logger",
    "set_correlation_id",
    "get_correlation_id",
    "new_correlation_id",
    "correlation_id_var",
    "log_operation_metrics",
]

correlation_id_var: ContextVar[Optional[str]] = ContextVar("correlation_id", default=None)
"""The current correlation id (None: none). Prefer set_correlation_id."""

_context_var: ContextVar[Dict[str, Any]] = ContextVar("topdeck_logging_context", default={})

_factory_mu = threading.Lock()
_factory_installed = False


def _install_record_factory() -> None:
    """Installs, once, a record factory that copies the current
    LoggingContext fields into ``record.context_data`` (not ``extra_data``,
    which callers may pass in ``extra=``)."""
    global _factory_installed
    with _factory_mu:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            ctx = _context_var.get()
            if ctx:
                record.context_data = dict(ctx)
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


class StructuredFormatter(logging.Formatter):
    """Formats each record as one JSON object: timestamp (UTC, ISO 8601),
    level, logger, message, module, function, line, correlation_id (when
    set), exception (when present), the fields of the LoggingContext the
    record was made in (``context_data``) and of ``extra_data``
    (log_operation_metrics, ContextLogger context).

    Values that are not JSON are written with ``str``. Stateless: safe across
    threads.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Returns the record as a JSON line."""
        data: Dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "module": record.module,
            "function": record.funcName,
            "line": record.lineno,
        }
        cid = getattr(record, "correlation_id", None) or correlation_id_var.get()
        if cid:
            data["correlation_id"] = cid
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        for attr in ("context_data", "extra_data"):
            fields = getattr(record, attr, None)
            if isinstance(fields, dict):
                data.update(fields)
        return json.dumps(data, default=str)


class ContextLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger that adds the current correlation id and its own ``context``
    fields to every record (``record.correlation_id``, ``record.extra_data``).

    Safe across threads and tasks (it holds no mutable state of its own).
    """

    def __init__(self, logger: logging.Logger, context: Optional[Dict[str, Any]] = None) -> None:
        """Wraps ``logger``; ``context`` fields go on every record."""
        super().__init__(logger, dict(context or {}))

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> Tuple[Any, MutableMapping[str, Any]]:
        """Adds the correlation id and the context to ``kwargs['extra']``."""
        extra = dict(kwargs.get("extra") or {})
        cid = correlation_id_var.get()
        if cid:
            extra.setdefault("correlation_id", cid)
        if self.extra:
            extra_data = dict(self.extra)
            if isinstance(extra.get("extra_data"), dict):
                extra_data.update(extra["extra_data"])
            extra["extra_data"] = extra_data
        kwargs["extra"] = extra
        return msg, kwargs


def setup_logging(level: str = "INFO", json_format: bool = True, log_file: Optional[str] = None) -> None:
    """Configures the root logger: one stdout handler (JSON lines with
    :class:`StructuredFormatter` when ``json_format``, else
    ``"%(asctime)s - %(name)s - %(levelname)s - %(message)s"``) and, with
    ``log_file``, a file handler in the same format. Replaces the root's
    existing handlers.

    Raises ValueError for an unknown ``level``. Call it once at start-up
    (it changes process-wide logging state).
    """
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        raise ValueError(f"setup_logging: unknown level {level!r}")
    _install_record_factory()
    root = logging.getLogger()
    root.setLevel(lvl)
    for h in list(root.handlers):
        root.removeHandler(h)
    formatter: logging.Formatter = (
        StructuredFormatter() if json_format else logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    )
    handlers: list = [logging.StreamHandler(sys.stdout)]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    for h in handlers:
        h.setLevel(lvl)
        h.setFormatter(formatter)
        root.addHandler(h)


def get_logger(name: str, context: Optional[Dict[str, Any]] = None) -> ContextLogger:
    """Returns a :class:`ContextLogger` over ``logging.getLogger(name)``."""
    _install_record_factory()
    return ContextLogger(logging.getLogger(name), context)


def set_correlation_id(correlation_id: Optional[str]) -> Token:  # type: ignore[type-arg]
    """Sets the correlation id of the current context (task or thread) and
    returns the token to restore the previous one
    (``correlation_id_var.reset(token)``). None clears it.

    The id goes out as ``x-correlation-id`` on every RPC of the SDK; the
    service accepts 1-128 printable ASCII characters without spaces (the SDK
    does not send other ids, and the server then makes up its own).
    """
    return correlation_id_var.set(correlation_id)


def get_correlation_id() -> Optional[str]:
    """Returns the correlation id of the current context, or None."""
    return correlation_id_var.get()


def new_correlation_id() -> str:
    """Sets a fresh random correlation id (32 hex digits) for the current
    context and returns it."""
    cid = secrets.token_hex(16)
    correlation_id_var.set(cid)
    return cid


class LoggingContext:
    """Adds fields to every log record made inside it, in this task or
    thread only::

        with LoggingContext(operation="discovery", resource_type="vm"):
            logger.info("Discovering resources")

    Also ``async with``. ``correlation_id=`` sets the correlation id for the
    block too. Nesting merges fields. An instance may be entered by one
    task/thread at a time.
    """

    def __init__(self, **context: Any) -> None:
        """``context``: the fields to add."""
        self.context = context
        self._tokens: list = []

    def __enter__(self) -> "LoggingContext":
        _install_record_factory()
        fields = dict(self.context)
        cid = fields.pop("correlation_id", None)
        t1 = _context_var.set({**_context_var.get(), **fields})
        t2 = correlation_id_var.set(cid) if cid is not None else None
        self._tokens.append((t1, t2))
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        t1, t2 = self._tokens.pop()
        if t2 is not None:
            correlation_id_var.reset(t2)
        _context_var.reset(t1)

    async def __aenter__(self) -> "LoggingContext":
        return self.__enter__()

    async def __aexit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def log_operation_metrics(
    operation: str,
    duration: float,
    success: bool,
    items_processed: int = 0,
    errors: int = 0,
    **extra: Any,
) -> None:
    """Logs one INFO line on the ``topdeck.metrics`` logger with the fields
    operation, duration_seconds (rounded to ms), success, items_processed,
    errors and ``extra``, as ``extra_data`` (JSON fields with
    StructuredFormatter)."""
    metrics = {
        "operation": operation,
        "duration_seconds": round(duration, 3),
        "success": success,
        "items_processed": items_processed,
        "errors": errors,
        **extra,
    }
    logging.getLogger("topdeck.metrics").info(f"Operation metrics: {operation}", extra={"extra_data": metrics})
