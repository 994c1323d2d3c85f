"""Fixtures for the Vault test-server suites.

Servers run as subprocesses of Debian's /usr/bin/python3 on free loopback
ports; every server started here is stopped (SIGTERM, then SIGKILL) at the
end of its scope.
"""

import http.client
import json
import os
import ssl
import subprocess
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # tests/, for testserver

from testserver.launcher import PYTHON, ServerProcess  # noqa: E402

SERVER = os.path.join(HERE, "server.py")
MAKE_CERTS = os.path.join(HERE, "make_certs.sh")

__all__ = ["PYTHON", "SERVER", "VaultProc"]


class VaultProc(ServerProcess):
    """A running server.py (started on construction) with a raw client factory."""

    def __init__(self, workdir, *args, tls=None):
        self.tls = tls
        args = list(args)
        if tls:
            args += ["--tls-cert", tls["server.pem"], "--tls-key", tls["server.key"],
                     "--client-ca", tls["ca.pem"]]
        super().__init__(SERVER, args, workdir)
        self.start()

    def client(self, cert=None, key=None, token="root"):
        ctx = None
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls["ca.pem"])
            if cert:
                ctx.load_cert_chain(cert, key)
        return Client(self.host, self.port, ctx, token)


class Resp:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json = json.loads(raw) if raw else None
        except ValueError:
            self.json = None

    @property
    def errors(self):
        return (self.json or {}).get("errors")

    @property
    def data(self):
        return (self.json or {}).get("data")

    def __repr__(self):
        return "<Resp %d %r>" % (self.status, self.raw[:300])


class Client:
    """Raw HTTP(S) client on one keep-alive connection (reconnects if closed)."""

    def __init__(self, host, port, ctx, token="root"):
        self.host, self.port, self.ctx, self.token = host, port, ctx, token
        self.conn = None

    def _connect(self):
        if self.ctx is not None:
            self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=10)
        else:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        self.conn.connect()

    def raw(self, method, path, body=None, headers=None):
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        for attempt in (0, 1):
            reused = self.conn is not None
            if not reused:
                self._connect()
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                r = self.conn.getresponse()
                data = r.read()
                resp = Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data.decode("utf-8", "replace"))
                if r.will_close:
                    self.close()
                return resp
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt or not reused:
                    raise

    def req(self, method, path, body=None, token=None, ns=None, headers=None):
        hdrs = dict(headers or {})
        tok = self.token if token is None else token
        if tok:
            hdrs["X-Vault-Token"] = tok
        if ns:
            hdrs["X-Vault-Namespace"] = ns
        return self.raw(method, "/v1/" + path.lstrip("/"), body, hdrs)

    def get(self, path, **kw):
        return self.req("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.req("POST", path, body if body is not None else {}, **kw)

    def delete(self, path, **kw):
        return self.req("DELETE", path, **kw)

    def list(self, path, **kw):
        return self.req("LIST", path, **kw)

    def control(self, method, path, body=None):
        return self.raw(method, "/__test__/" + path.lstrip("/"), body)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("vault_server"))


@pytest.fixture(scope="session")
def certs(workdir):
    out = os.path.join(workdir, "certs")
    subprocess.run(["bash", MAKE_CERTS, out], check=True, stdout=subprocess.DEVNULL)
    return {name: os.path.join(out, name) for name in os.listdir(out)}


@pytest.fixture(scope="session")
def http_server(workdir):
    srv = VaultProc(os.path.join(workdir, "http"), "--test-controls", "--namespace", "team1",
                    "--namespace", "team1/sub", "--mount", "kv2", "--max-request-bytes", "1048576")
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="session")
def tls_server(workdir, certs):
    srv = VaultProc(os.path.join(workdir, "tls"), "--test-controls", "--namespace", "team1", tls=certs)
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def start_server(workdir, certs):
    """Factory for a private server (isolated state); stopped after the test."""
    started = []

    def start(*args, tls=False):
        srv = VaultProc(os.path.join(workdir, "private"), *args, tls=certs if tls else None)
        started.append(srv)
        return srv
    yield start
    assert [srv.stop() for srv in started] == [0] * len(started), "a private server did not exit cleanly"


@pytest.fixture
def c(http_server):
    cl = http_server.client()
    yield cl
    cl.close()


@pytest.fixture
def uniq():
    return "t" + uuid.uuid4().hex[:10]
