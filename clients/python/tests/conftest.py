"""Fixtures: real resilienced processes (built once per session with
``go build``) and a private redis-server, on loopback ports.

Every wait here is bounded; every process started here is killed at
teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar

import grpc
import pytest

HERE = Path(__file__).resolve().parent
PKG_DIR = HERE.parent  # clients/python
REPO = PKG_DIR.parent.parent
sys.path.insert(0, str(PKG_DIR))

import topdeck_resilience as tr  # noqa: E402

START_TIMEOUT = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="topdeck-pysdk-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def resilienced_bin(workdir: Path) -> str:
    """The resilienced binary: $RESILIENCED_BIN, else built from this tree."""
    prebuilt = os.environ.get("RESILIENCED_BIN")
    if prebuilt:
        return prebuilt
    out = workdir / "bin"
    out.mkdir()
    r = subprocess.run(["go", "build", "-o", str(out) + "/", "./cmd/resilienced"], cwd=REPO, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"go build ./cmd/resilienced failed:\n{r.stdout}{r.stderr}")
    return str(out / "resilienced")


def end_process(proc: subprocess.Popen, graceful: bool = False) -> None:
    """Ends a process started here, waking it first if it is paused
    (SIGSTOP): SIGKILL, or with ``graceful`` SIGTERM and SIGKILL 10 s later.
    Waits (bounded) for it to exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        if graceful:
            proc.terminate()
        else:
            proc.kill()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        if graceful:
            proc.kill()
            proc.wait(5)


class Server:
    """One resilienced process. ``addr`` is its gRPC address; ``lines()``
    its JSON log lines so far."""

    def __init__(self, binary: str, workdir: Path, args: List[str], config: Optional[str] = None, creds=None) -> None:
        argv = [binary, "--listen", "127.0.0.1:0", "--metrics-listen", ""]
        if config is not None:
            p = workdir / f"config-{time.monotonic_ns()}.yaml"
            p.write_text(config)
            argv += ["--config", str(p)]
        argv += args
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESILIENCE_")}
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        self._mu = threading.Lock()
        self._lines: List[str] = []
        started = threading.Event()
        self.addr = ""

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                with self._mu:
                    self._lines.append(line)
                if not started.is_set():
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    if rec.get("msg") == "resilienced started":
                        self.addr = rec["listen"]
                        started.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not started.wait(START_TIMEOUT):
            self.kill()
            raise RuntimeError(f"resilienced did not start within {START_TIMEOUT}s:\n{self.output()}")
        self.wait_serving(creds)

    def wait_serving(self, creds=None) -> None:
        """Waits (bounded) until the gRPC port completes a handshake: the
        "started" line can come a moment before a loaded machine serves."""
        ch = grpc.secure_channel(self.addr, creds) if creds is not None else grpc.insecure_channel(self.addr)
        try:
            grpc.channel_ready_future(ch).result(timeout=START_TIMEOUT)
        except grpc.FutureTimeoutError:
            self.kill()
            raise RuntimeError(f"resilienced not serving within {START_TIMEOUT}s:\n{self.output()}")
        finally:
            ch.close()

    def output(self) -> str:
        with self._mu:
            return "".join(self._lines)

    def lines(self) -> List[Dict]:
        out = []
        with self._mu:
            for line in self._lines:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def pause(self) -> None:
        """Stops the server (SIGSTOP) and returns once it is stopped: a
        signal is delivered asynchronously, and a call sent right after it
        could still be answered."""
        self.proc.send_signal(signal.SIGSTOP)
        for _ in range(500):  # at most 5 s
            try:
                with open(f"/proc/{self.proc.pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                        return
            except OSError:
                return
            time.sleep(0.01)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        end_process(self.proc)

    def stop(self) -> None:
        end_process(self.proc, graceful=True)


class Redis:
    """A private redis-server on a free loopback port, without persistence."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server not found: run clients/python/test.sh (it apt-installs redis-server)")
        self.port = free_port()
        d = workdir / f"redis-{self.port}"
        d.mkdir()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(d)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.kill()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        end_process(self.proc)


SERVER_CONFIG = """
limits:
  tight:
    max_calls: 2
    time_window: 60s
  wide:
    max_calls: 1000
    time_window: 1s
breakers:
  default:
    failure_threshold: 3
    recovery_timeout: 300ms
    probe_timeout: 2s
"""


@pytest.fixture(scope="session")
def server(resilienced_bin: str, workdir: Path) -> Iterator[Server]:
    """A long-lived resilienced on the embedded store, logging every call
    (successful hot-path calls are logged at debug)."""
    s = Server(resilienced_bin, workdir, ["--log-level", "debug"], SERVER_CONFIG)
    yield s
    s.stop()


P = TypeVar("P", Server, Redis)


def owned(make: Callable[..., P]) -> Iterator[Callable[..., P]]:
    """Yields a factory that calls ``make`` and keeps what it made (a Server
    or a Redis), then kills all of it: the body of a start_... fixture."""
    started: List[P] = []

    def start(*args: Any, **kwargs: Any) -> P:
        p = make(*args, **kwargs)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


@pytest.fixture()
def start_server(resilienced_bin: str, workdir: Path) -> Iterator:
    """A factory of resilienced processes owned by one test."""

    def make(*args: str, config: Optional[str] = SERVER_CONFIG, creds=None) -> Server:
        return Server(resilienced_bin, workdir, list(args), config, creds)

    yield from owned(make)


@pytest.fixture()
def start_redis(workdir: Path) -> Iterator:
    """A factory of private redis-servers owned by one test."""
    yield from owned(lambda: Redis(workdir))


@pytest.fixture()
async def client(server: Server) -> "Iterator[tr.ResilienceClient]":
    # A generous timeout: a loaded CI machine must not turn a slow first
    # connect into a local decision where a test expects the service's.
    c = tr.ResilienceClient(server.addr, timeout=2.0)
    yield c
    await c.close()


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{time.monotonic_ns()}"
