"""A bounded pool for running async tasks concurrently (the seed's
``topdeck.common.worker_pool``, same names; local, no service involved).

Failures are tracked (:class:`~topdeck_resilience.resilience.ErrorTracker`),
not raised mid-batch: ``map`` returns the results of the tasks that
succeeded, in input order. A pool is meant for one event loop at a time;
its error tracker is thread-safe.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .resilience import ErrorTracker

__all__ = ["WorkerPoolConfig", "WorkerPool", "parallel_map"]

logger = logging.getLogger(__name__)


@dataclass
class WorkerPoolConfig:
    """How a :class:`WorkerPool` runs tasks.

    max_workers: tasks running at once (default 5).
    timeout: seconds each task may take (None: no limit); a task past it
        fails with TimeoutError. ``task_timeout`` is the same setting under
        the issue's name; give either.
    continue_on_error: when False and every task of a batch failed,
        ``execute``/``map`` raise RuntimeError (default True).
    """

    max_workers: int = 5
    timeout: Optional[float] = None
    continue_on_error: bool = True
    task_timeout: Optional[float] = None

    def __post_init__(self) -> None:
        if self.max_workers < 1:
            raise ValueError(f"WorkerPoolConfig: max_workers must be >= 1, got {self.max_workers}")
        if self.timeout is None:
            self.timeout = self.task_timeout
        elif self.task_timeout is None:
            self.task_timeout = self.timeout
        elif self.timeout != self.task_timeout:
            raise ValueError("WorkerPoolConfig: timeout and task_timeout differ; give one")


class WorkerPool:
    """Runs tasks with at most ``config.max_workers`` at once, each within
    ``config.timeout``. Sync callables run in a worker thread
    (``asyncio.to_thread``). Every task's outcome is recorded in the pool's
    ErrorTracker (``get_summary()``, ``has_errors()``), across calls.
    """

    def __init__(self, config: Optional[WorkerPoolConfig] = None) -> None:
        """``config``: None uses WorkerPoolConfig()."""
        self.config = config or WorkerPoolConfig()
        self.error_tracker = ErrorTracker()

    async def execute(
        self,
        tasks: Sequence[Callable[..., Any]],
        task_args: Optional[Sequence[Tuple[Any, ...]]] = None,
        task_kwargs: Optional[Sequence[Dict[str, Any]]] = None,
    ) -> List[Any]:
        """Calls ``tasks[i](*task_args[i], **task_kwargs[i])`` for every i,
        concurrently within the pool's bounds, and returns the results of
        the ones that succeeded, in order. Raises ValueError when the lists
        differ in length, RuntimeError when all failed and
        ``continue_on_error`` is False. Cancelling it cancels the tasks."""
        n = len(tasks)
        args = list(task_args) if task_args is not None else [() for _ in range(n)]
        kwargs = list(task_kwargs) if task_kwargs is not None else [{} for _ in range(n)]
        if len(args) != n or len(kwargs) != n:
            raise ValueError("tasks, task_args, and task_kwargs must have same length")
        sem = asyncio.Semaphore(self.config.max_workers)

        async def run(i: int) -> Any:
            async with sem:
                fn, a, kw = tasks[i], args[i], kwargs[i]
                if inspect.iscoroutinefunction(fn):
                    aw = fn(*a, **kw)
                else:
                    aw = asyncio.to_thread(fn, *a, **kw)
                if self.config.timeout:
                    return await asyncio.wait_for(aw, timeout=self.config.timeout)
                r = await aw
                if inspect.isawaitable(r):  # a sync callable that returned a coroutine
                    r = await r
                return r

        results = await asyncio.gather(*(run(i) for i in range(n)), return_exceptions=True)
        ok: List[Any] = []
        failed = 0
        for i, r in enumerate(results):
            if isinstance(r, BaseException):
                if isinstance(r, asyncio.CancelledError):
                    raise r
                failed += 1
                if isinstance(r, asyncio.TimeoutError):
                    r = TimeoutError(f"task {i} timed out after {self.config.timeout}s")
                self.error_tracker.record_error(str(i), r)
            else:
                ok.append(r)
                self.error_tracker.record_success(str(i))
        logger.info("Worker pool completed: %d succeeded, %d failed out of %d", n - failed, failed, n)
        if not self.config.continue_on_error and n and failed == n:
            raise RuntimeError(f"All {n} tasks failed")
        return ok

    async def map(self, func: Callable[..., Any], items: Iterable[Any]) -> List[Any]:
        """Applies ``func`` to every item concurrently within the pool's
        bounds; returns the successful results in input order (failures are
        in ``get_summary()``). Raises as :meth:`execute`."""
        items = list(items)
        return await self.execute([func] * len(items), [(item,) for item in items])

    def get_summary(self) -> Dict[str, Any]:
        """The ErrorTracker summary of every task run by this pool."""
        return self.error_tracker.get_summary()

    def has_errors(self) -> bool:
        """Whether any task of this pool failed."""
        return self.error_tracker.has_errors()


async def parallel_map(
    func: Callable[..., Any],
    items: Iterable[Any],
    max_workers: int = 5,
    timeout: Optional[float] = None,
) -> List[Any]:
    """``WorkerPool(WorkerPoolConfig(max_workers, timeout)).map(func, items)``:
    the successful results in input order."""
    return await WorkerPool(WorkerPoolConfig(max_workers=max_workers, timeout=timeout)).map(func, items)
