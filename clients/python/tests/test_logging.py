"""logging_config, and the correlation id reaching the service's log."""

import asyncio
import io
import json
import logging
import time

import pytest

import topdeck_resilience as tr
from topdeck_resilience import logging_config as lc
from conftest import unique


@pytest.fixture()
def captured():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    lc.setup_logging(level="DEBUG", json_format=True)
    buf = io.StringIO()
    root.handlers[0].stream = buf
    yield buf
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]


def lines(buf):
    return [json.loads(l) for l in buf.getvalue().splitlines() if l.strip()]


def test_json_lines_with_correlation_id_and_context(captured) -> None:
    log = lc.get_logger("svc", {"component": "discovery"})
    tok = lc.set_correlation_id("req-1")
    try:
        log.info("hello %s", "world")
        with lc.LoggingContext(operation="scan", resource_type="vm"):
            logging.getLogger("plain").warning("inside")
        logging.getLogger("plain").warning("outside")
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("failed")
    finally:
        lc.correlation_id_var.reset(tok)
    a, b, c, d = lines(captured)
    assert a["message"] == "hello world" and a["correlation_id"] == "req-1" and a["component"] == "discovery"
    assert a["level"] == "INFO" and a["logger"] == "svc" and a["timestamp"].endswith("+00:00")
    assert b["operation"] == "scan" and b["resource_type"] == "vm"
    assert "operation" not in c
    assert "ValueError: bad" in d["exception"]
    assert lc.get_correlation_id() is None


async def test_logging_context_is_per_task(captured) -> None:
    async def work(n):
        async with lc.LoggingContext(task=n, correlation_id=f"cid-{n}"):
            await asyncio.sleep(0.01 * (3 - n))
            logging.getLogger("t").info("done")

    await asyncio.gather(*(work(n) for n in range(3)))
    got = {(l["task"], l["correlation_id"]) for l in lines(captured)}
    assert got == {(0, "cid-0"), (1, "cid-1"), (2, "cid-2")}


def test_log_operation_metrics(captured) -> None:
    with lc.LoggingContext(job="nightly"):
        lc.log_operation_metrics("discover", 1.23456, True, items_processed=10, errors=1, region="eu")
    (rec,) = lines(captured)
    assert rec["logger"] == "topdeck.metrics" and rec["operation"] == "discover" and rec["duration_seconds"] == 1.235
    assert rec["items_processed"] == 10 and rec["errors"] == 1 and rec["region"] == "eu" and rec["job"] == "nightly"


def test_text_format_and_file(tmp_path) -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        f = tmp_path / "log.txt"
        lc.setup_logging(level="info", json_format=False, log_file=str(f))
        logging.getLogger("x").info("to file")
        for h in root.handlers:
            h.flush()
        assert " - x - INFO - to file" in f.read_text()
        with pytest.raises(ValueError):
            lc.setup_logging(level="LOUD")
    finally:
        for h in root.handlers:
            h.close()
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


async def test_correlation_id_reaches_the_service_log(server, client) -> None:
    cid = lc.new_correlation_id()
    try:
        assert len(cid) == 32 and lc.get_correlation_id() == cid
        await tr.RateLimiter(5, 1.0, key=unique("cid"), client=client).acquire()
        cache = tr.Cache(client=client)
        await cache.get(unique("cid"))  # also starts the near cache's stream: without this id
        await tr.CircuitBreaker(unique("cid"), client=client).call(lambda: None)
        await cache.close()  # the stream's line is written now
    finally:
        lc.set_correlation_id(None)
    deadline = time.monotonic() + 5
    while True:
        methods = sorted(l.get("grpc.method") for l in server.lines() if l.get("correlation_id") == cid)
        if len(methods) >= 4 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert methods == ["Acquire", "Acquire", "Get", "ReportOutcome"], methods
