"""The shared HTTP layer with a protocol that is not Vault: proves the seam
(testserver.core.Protocol) carries a second server without copying code --
errors in the protocol's own format, 404 outside its API, 413 with its
message, faults, the request log with its redaction, its own controls.

Runs in-process (a ThreadedServer on a free loopback port per test)."""

import hashlib
import http.client
import json
import threading
import types

import pytest

from testserver.controls import Controls, sha256_redact
from testserver.core import Protocol, ProtocolError, Response
from testserver.httpserver import ThreadedServer


class Echo(Protocol):
    """A toy JSON protocol with AWS-style errors ({"__type", "message"})."""
    name = "echo_server"
    body_too_large = ["payload too big"]

    def error(self, status, messages, headers=None, code=None):
        return Response(status, {"__type": code or "Error", "message": "; ".join(messages)}, headers)

    def accepts(self, ex):
        return ex.raw_path.startswith("/api/")

    def redact(self, name, value):
        return sha256_redact(value) if name == "authorization" else value

    def redact_body(self, ex):
        return ex.body.replace(b"hunter2", b"<redacted>")

    def handle(self, ex):
        if ex.raw_path == "/api/fail":
            raise ProtocolError(400, ["bad input"], code="ValidationException")
        if ex.raw_path == "/api/crash":
            raise RuntimeError("secret detail that must not leak")
        return Response(200, {"method": ex.method, "body": ex.body.decode(), "tls": ex.is_tls})

    def control(self, method, path, data):
        return {"pong": data.get("x")} if path == "ping" and method == "POST" else None


@pytest.fixture
def server():
    args = types.SimpleNamespace(test_controls=True, max_request_bytes=1024, verbose=False)
    srv = ThreadedServer(("127.0.0.1", 0), Echo(), Controls(100), None, args)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join(5)


def call(srv, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)
    finally:
        conn.close()


def test_protocol_answers_and_errors_in_its_own_format(server):
    assert call(server, "POST", "/api/x", b"hi") == (200, {"method": "POST", "body": "hi", "tls": False})
    assert call(server, "GET", "/api/fail") == (400, {"__type": "ValidationException", "message": "bad input"})
    st, body = call(server, "GET", "/api/crash")
    assert st == 500 and body == {"__type": "Error", "message": "internal error"}
    assert call(server, "GET", "/other") == (404, {"__type": "Error", "message": ""})
    assert call(server, "POST", "/api/x", b"x" * 2000) == (413, {"__type": "Error", "message": "payload too big"})


def test_faults_log_and_controls_come_with_the_layer(server):
    assert call(server, "POST", "/__test__/faults", json.dumps({"path": "^/api/f", "status": 503}))[0] == 200
    assert call(server, "GET", "/api/flaky") == (503, {"__type": "Error", "message": ""})
    assert call(server, "GET", "/api/flaky")[0] == 200          # times defaults to 1
    call(server, "GET", "/api/x", headers={"Authorization": "tok-123"})
    st, log = call(server, "GET", "/__test__/requests")
    assert st == 200 and [e["path"] for e in log["requests"]] == ["/api/flaky", "/api/flaky", "/api/x"]
    assert log["requests"][-1]["headers"]["Authorization"] == "sha256:" + hashlib.sha256(b"tok-123").hexdigest()
    assert "tok-123" not in json.dumps(log)
    assert call(server, "GET", "/__test__/stats")[1]["requests"] == 3
    assert call(server, "POST", "/__test__/ping", json.dumps({"x": 7})) == (200, {"pong": 7})
    assert call(server, "POST", "/__test__/nothing", "{}") == (404, {"errors": []})
    assert call(server, "POST", "/__test__/faults", json.dumps({"times": "many"}))[0] == 400


def test_faults_in_the_protocols_shape_matched_on_headers(server):
    """A fault with code/message renders through Protocol.error; match_headers narrows it."""
    spec = {"path": "^/api/", "match_headers": {"X-Op": "^Get"}, "status": 400,
            "code": "ThrottlingException", "message": "Rate exceeded", "times": -1}
    assert call(server, "POST", "/__test__/faults", json.dumps(spec))[0] == 200
    assert call(server, "GET", "/api/x")[0] == 200                                   # no header
    assert call(server, "GET", "/api/x", headers={"X-Op": "Put"})[0] == 200         # no match
    assert call(server, "GET", "/api/x", headers={"X-Op": "GetIt"}) == (
        400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
    bad = {"match_headers": {"X-Op": "("}}
    assert call(server, "POST", "/__test__/faults", json.dumps(bad))[0] == 400


def test_request_log_body_goes_through_redact_body(server):
    call(server, "POST", "/api/x", b'{"password": "hunter2"}')
    log = call(server, "GET", "/__test__/requests")[1]["requests"]
    assert log[-1]["body"] == '{"password": "<redacted>"}'
    assert "hunter2" not in json.dumps(log)
