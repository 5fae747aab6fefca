"""The public API: every name is documented and exercised by these tests,
and the seed's names and defaults are kept."""

import inspect
from pathlib import Path

import pytest

import topdeck_resilience
from topdeck_resilience import cache, client, errors, logging_config, resilience, upstream, worker_pool

MODULES = [topdeck_resilience, resilience, worker_pool, cache, logging_config, client, errors, upstream]
TESTS = Path(__file__).parent


def public_names():
    for m in MODULES:
        for name in m.__all__:
            yield m, name


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_every_public_name_is_documented(module) -> None:
    assert module.__doc__, module.__name__
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__ and obj.__doc__.strip(), f"{module.__name__}.{name} has no docstring"
        if inspect.isclass(obj) and obj.__module__.startswith("topdeck_resilience"):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                    continue
                doc = member.__doc__ if not isinstance(member, property) else member.fget.__doc__
                assert doc and doc.strip(), f"{module.__name__}.{name}.{attr} has no docstring"


def test_every_public_name_is_exercised() -> None:
    text = "\n".join(p.read_text() for p in TESTS.glob("test_*.py") if p.name != "test_api.py")
    missing = sorted({f"{m.__name__}.{n}" for m, n in public_names() if n not in text and not n.startswith("__")})
    assert not missing, f"not used by any test: {missing}"


def test_seed_signatures_and_defaults() -> None:
    def defaults(f):
        return {k: p.default for k, p in inspect.signature(f).parameters.items() if p.default is not inspect.Parameter.empty}

    assert defaults(resilience.RetryConfig) == {
        "max_attempts": 3, "initial_delay": 1.0, "max_delay": 60.0, "exponential_base": 2.0, "jitter": True,
        "retry_on": (Exception,), "deadline": None, "before_sleep": None,
    }
    assert list(inspect.signature(resilience.retry_with_backoff).parameters) == ["config", "exceptions"]
    assert defaults(resilience.CircuitBreaker)["failure_threshold"] == 5
    assert defaults(resilience.CircuitBreaker)["recovery_timeout"] == 60.0
    assert defaults(resilience.RateLimiter.acquire) == {"cost": 1, "max_wait": None}
    assert list(inspect.signature(resilience.RateLimiter).parameters)[:2] == ["max_calls", "time_window"]
    assert defaults(worker_pool.parallel_map) == {"max_workers": 5, "timeout": None}
    assert worker_pool.WorkerPoolConfig().max_workers == 5 and worker_pool.WorkerPoolConfig().continue_on_error
    cfg = cache.CacheConfig()
    assert (cfg.address, cfg.default_ttl, cfg.key_prefix) == (None, 300, "")
    assert defaults(cache.cached) == {"ttl": None, "key_prefix": None, "key": None, "cache": None}
    assert defaults(cache.Cache.set) == {"ttl": None}
    assert defaults(logging_config.setup_logging) == {"level": "INFO", "json_format": True, "log_file": None}
    assert defaults(logging_config.log_operation_metrics) == {"items_processed": 0, "errors": 0}
    assert defaults(client.ResilienceClient)["timeout"] == 0.25
    for name in ["record_success", "record_error", "get_summary", "has_errors", "raise_if_all_failed"]:
        assert callable(getattr(resilience.ErrorTracker, name))
    for name in ["execute", "map", "get_summary", "has_errors"]:
        assert callable(getattr(worker_pool.WorkerPool, name))
    for name in ["connect", "close", "get", "set", "delete", "exists", "clear_pattern", "get_stats"]:
        assert callable(getattr(cache.Cache, name))


def test_typed_package() -> None:
    assert (Path(topdeck_resilience.__file__).parent / "py.typed").exists()
    assert topdeck_resilience.__version__
