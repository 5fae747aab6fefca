"""What goes on the wire: token, correlation id, TLS, and error details.

The metadata and error-detail checks use a small recording gRPC server that
speaks the service's API (it answers what the test tells it to, and keeps
the metadata it received); TLS runs against a real resilienced.
"""

import asyncio
import subprocess
from pathlib import Path

import grpc
import grpc.aio
import pytest

import topdeck_resilience as tr
from topdeck_resilience._gen import resilience_pb2 as pb
from topdeck_resilience.resilience import RateLimiter
from conftest import unique
from status_encoding import status_with_details


class Recorder:
    def __init__(self) -> None:
        self.metadata = []
        self.answer = None  # None: allowed; else (code, message, details blob, send_header)

    async def acquire(self, request, context):
        md = dict(context.invocation_metadata())
        self.metadata.append(md)
        if self.answer is None:
            await context.send_initial_metadata((("x-correlation-id", md.get("x-correlation-id", "generated")),))
            return pb.AcquireResponse(allowed=True, reason=pb.ACQUIRE_REASON_ALLOWED, remaining=1)
        code, message, blob, send_header = self.answer
        if send_header:
            await context.send_initial_metadata((("x-correlation-id", md.get("x-correlation-id", "generated")),))
        trailer = (("grpc-status-details-bin", blob),) if blob else ()
        await context.abort(code, message, trailing_metadata=trailer)


@pytest.fixture()
async def recorder():
    rec = Recorder()
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "topdeck.resilience.v1.ResilienceService",
        {
            "Acquire": grpc.unary_unary_rpc_method_handler(
                rec.acquire, request_deserializer=pb.AcquireRequest.FromString, response_serializer=pb.AcquireResponse.SerializeToString
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    rec.addr = f"127.0.0.1:{port}"
    yield rec
    await server.stop(0)


async def test_token_and_correlation_id_on_every_rpc(recorder) -> None:
    c = tr.ResilienceClient(recorder.addr, token="s3cret", timeout=2.0)
    try:
        lim = RateLimiter(5, 1.0, key="k", client=c)
        await lim.try_acquire()
        tr.set_correlation_id("req-123")
        await lim.try_acquire()
        tr.set_correlation_id("bad id with spaces")  # not a valid id: not sent (the server makes one up)
        await lim.try_acquire()
        tr.set_correlation_id(None)
    finally:
        await c.close()
    assert all(m.get("authorization") == "Bearer s3cret" for m in recorder.metadata)
    assert [m.get("x-correlation-id") for m in recorder.metadata] == [None, "req-123", None]


async def test_status_details_become_typed_exceptions(recorder) -> None:
    c = tr.ResilienceClient(recorder.addr, timeout=2.0)
    try:
        blob = status_with_details(3, "limit.max_calls: must be > 0", violations=[("limit.max_calls", "must be > 0")],
                                   reason="BAD", domain="topdeck", metadata={"k": "v"})
        recorder.answer = (grpc.StatusCode.INVALID_ARGUMENT, "limit.max_calls: must be > 0", blob, True)
        with pytest.raises(tr.InvalidArgumentError) as ei:
            await c.acquire("k", limit=tr.RateLimit(1, 1.0))
        e = ei.value
        assert e.field_violations == (tr.FieldViolation("limit.max_calls", "must be > 0"),)
        assert (e.reason, e.domain, e.message) == ("BAD", "topdeck", "limit.max_calls: must be > 0")

        blob = status_with_details(8, "quota", retry_delay=2.25)
        recorder.answer = (grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", blob, True)
        with pytest.raises(tr.ServiceError) as ei2:
            await c.acquire("k", limit=tr.RateLimit(1, 1.0))
        assert ei2.value.retry_after == 2.25 and tr.retry_after_of(ei2.value) == 2.25

        for code, cls in [(grpc.StatusCode.PERMISSION_DENIED, tr.PermissionDeniedError),
                          (grpc.StatusCode.UNAUTHENTICATED, tr.UnauthenticatedError),
                          (grpc.StatusCode.FAILED_PRECONDITION, tr.FailedPreconditionError),
                          (grpc.StatusCode.NOT_FOUND, tr.NotFoundError),
                          (grpc.StatusCode.UNAVAILABLE, tr.StoreUnavailableError)]:
            recorder.answer = (code, "no", b"", True)
            with pytest.raises(cls):
                await c.acquire("k", limit=tr.RateLimit(1, 1.0))

        # UNAVAILABLE without the service's header: a proxy or transport said it: decide locally.
        recorder.answer = (grpc.StatusCode.UNAVAILABLE, "upstream connect error", b"", False)
        d = await c.acquire("k", limit=tr.RateLimit(1, 1.0))
        assert d.allowed and d.local and d.degraded
    finally:
        await c.close()


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


async def test_tls(start_server, tls_cert) -> None:
    cert, key = tls_cert
    creds = grpc.ssl_channel_credentials(root_certificates=Path(cert).read_bytes())
    srv = start_server("--tls-cert", str(cert), "--tls-key", str(key), creds=creds)
    good = tr.ResilienceClient(srv.addr, tls=creds, timeout=2.0)
    plain = tr.ResilienceClient(srv.addr, timeout=0.5)
    try:
        d = await good.acquire(unique("tls"), limit=tr.RateLimit(1, 1.0))
        assert d.allowed and not d.local
        d = await plain.acquire(unique("tls"), limit=tr.RateLimit(1, 1.0))  # plaintext to a TLS port: unreachable
        assert d.local
    finally:
        await good.close()
        await plain.close()
    with pytest.raises(tr.InvalidArgumentError):
        tr.ResilienceClient(srv.addr, tls="yes")  # type: ignore[arg-type]
    assert tr.ResilienceClient(srv.addr, tls=True)._creds is not None
