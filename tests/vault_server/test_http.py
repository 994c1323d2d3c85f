"""The HTTP layer (tests/testserver) behind the Vault test server: bad input, bodies,
keep-alive, TLS, the process and its command line.

Expected status codes and bodies follow HashiCorp Vault's HTTP API.
"""

import json
import os
import socket
import subprocess
import threading

import pytest

from conftest import PYTHON, SERVER


def test_keepalive_single_connection(http_server):
    cl = http_server.client()
    try:
        for _ in range(5):
            assert cl.get("sys/health", token="").status == 200
        sock = cl.conn.sock
        assert cl.get("sys/seal-status", token="").status == 200
        assert cl.conn.sock is sock
    finally:
        cl.close()


def test_malformed_json(c, uniq):
    r = c.req("POST", "secret/data/" + uniq, '{"data": {', headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.errors[0].startswith("failed to parse JSON input: ")
    r = c.req("POST", "secret/data/" + uniq, "[1,2]")
    assert r.status == 400
    assert r.errors == ["failed to parse JSON input: json: cannot unmarshal array into Go value of type map[string]interface {}"]
    r = c.req("POST", "secret/data/" + uniq, b"\xff\xfe")
    assert r.status == 400


def test_wrong_types(c, uniq):
    r = c.post("secret/metadata/" + uniq, {"max_versions": "lots"})
    assert r.status == 400 and "max_versions" in r.errors[0]
    r = c.post("secret/data/" + uniq, {"data": {"a": 1}, "options": {"cas": "x"}})
    assert r.status == 400


def test_oversized_body(http_server, uniq):
    cl = http_server.client()
    big = '{"data": {"x": "' + "a" * (1024 * 1024 + 10) + '"}}'
    r = cl.req("POST", "secret/data/" + uniq, big)
    assert r.status == 413 and r.errors
    cl.close()
    cl = http_server.client()
    assert cl.get("sys/health", token="").status == 200  # server still fine
    cl.close()


def test_dotdot_and_encoded_paths(c, uniq):
    c.post("secret/data/%s/a/b" % uniq, {"data": {"v": 1}})
    r = c.raw("GET", "/v1/secret/data/%s/a/x/../b" % uniq, headers={"X-Vault-Token": "root"})
    assert r.status == 301 and r.headers["location"] == "/v1/secret/data/%s/a/b" % uniq
    r = c.raw("GET", "/v1/secret/data/%s/a%%2Fb" % uniq, headers={"X-Vault-Token": "root"})
    assert r.status == 200 and r.data["data"] == {"v": 1}
    r = c.raw("GET", "/v1/secret/data/%s/%%2e%%2e/x" % uniq, headers={"X-Vault-Token": "root"})
    assert r.status == 301
    r = c.raw("GET", "/v1/secret/data/%zz", headers={"X-Vault-Token": "root"})
    assert r.status == 400


def test_unknown_routes_and_methods(c):
    r = c.get("nomount/data/x")
    assert r.status == 404
    assert r.errors == ['no handler for route "nomount/data/x". route entry not found.']
    r = c.req("FROB", "secret/data/x")
    assert r.status == 405 and r.json == {"errors": []}
    r = c.raw("GET", "/ui/")
    assert r.status == 404


def test_raw_socket_garbage_does_not_kill_server(http_server):
    s = socket.create_connection((http_server.host, http_server.port))
    s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
    data = s.recv(4096)
    s.close()
    assert data.startswith(b"HTTP/1.1 400")
    s = socket.create_connection((http_server.host, http_server.port))
    s.sendall(b"POST /v1/secret/data/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    data = s.recv(4096)
    s.close()
    assert data.startswith(b"HTTP/1.1 400") and b"Traceback" not in data
    cl = http_server.client()
    assert cl.get("sys/health", token="").status == 200
    cl.close()


def test_chunked_body(http_server, uniq):
    s = socket.create_connection((http_server.host, http_server.port))
    body = json.dumps({"data": {"c": "chunked"}}).encode()
    req = (b"POST /v1/secret/data/" + uniq.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Vault-Token: root\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % 5 + body[:5] + b"\r\n" +
           b"%x\r\n" % (len(body) - 5) + body[5:] + b"\r\n0\r\n\r\n")
    s.sendall(req)
    data = s.recv(65536)
    s.close()
    assert data.startswith(b"HTTP/1.1 200")
    cl = http_server.client()
    assert cl.get("secret/data/" + uniq).data["data"] == {"c": "chunked"}
    cl.close()


def test_cli_ready_file_pid_file_and_sigterm(tmp_path):
    ready = tmp_path / "ready"
    pidf = tmp_path / "pid"
    p = subprocess.Popen([PYTHON, SERVER, "--port", "0", "--ready-file", str(ready), "--pid-file", str(pidf)],
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().strip()
        url = ready.read_text()
        assert url.endswith("\n") and line == "vault_server listening on " + url.strip()
        assert url.startswith("http://127.0.0.1:")
        assert int(pidf.read_text()) == p.pid
    finally:
        p.terminate()
        assert p.wait(10) == 0
    assert not pidf.exists()


def test_concurrent_requests(http_server, uniq):
    errors = []

    def worker(i):
        cl = http_server.client()
        try:
            for j in range(10):
                r = cl.post("secret/data/%s/%d" % (uniq, i), {"data": {"j": j}})
                if r.status != 200:
                    errors.append(r)
        finally:
            cl.close()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    cl = http_server.client()
    assert len(cl.list("secret/metadata/" + uniq).data["keys"]) == 8
    cl.close()


def test_plain_http_to_tls_port_and_garbage_handshake(tls_server):
    for payload in (b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello"):
        s = socket.create_connection((tls_server.host, tls_server.port), timeout=5)
        s.sendall(payload)
        try:
            s.recv(100)
        except OSError:
            pass
        s.close()
    cl = tls_server.client()
    assert cl.get("sys/health", token="").status == 200
    cl.close()


def test_ipv6_listener(start_server):
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError as e:
        # A host without ::1 must say so (KMS_TEST_NO_IPV6=1), never pass silently.
        if os.environ.get("KMS_TEST_NO_IPV6") == "1":
            pytest.skip("KMS_TEST_NO_IPV6=1: this host has no IPv6 loopback")
        pytest.fail("no IPv6 loopback (%s); set KMS_TEST_NO_IPV6=1 to run without it" % e)
    srv = start_server("--host", "::1")
    assert srv.url.startswith("http://[::1]:")
    cl = srv.client()
    assert cl.get("sys/health", token="").status == 200
    cl.close()


def test_oversized_body_with_expect_continue(http_server):
    s = socket.create_connection((http_server.host, http_server.port), timeout=5)
    s.sendall(b"POST /v1/secret/data/x HTTP/1.1\r\nHost: x\r\nX-Vault-Token: root\r\n"
              b"Content-Length: 99999999\r\nExpect: 100-continue\r\n\r\n")
    data = s.recv(4096)
    s.close()
    assert data.startswith(b"HTTP/1.1 413")


def test_form_bodies_and_delete_ignores_body(c, uniq):
    r = c.req("POST", "sys/policies/acl/" + uniq, "policy=path+%22x%22+%7B+capabilities+%3D+%5B%22read%22%5D+%7D",
              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 204
    # curl -d '{...}' sends a form content type; Vault still parses it as JSON
    r = c.req("POST", "secret/data/" + uniq, '{"data": {"a": 1}}',
              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200
    r = c.req("DELETE", "secret/data/" + uniq, "not json at all")
    assert r.status == 204


FUZZ_PATHS = [
    "secret/data/fz", "secret/metadata/fz", "secret/delete/fz", "secret/undelete/fz", "secret/destroy/fz",
    "secret/config", "secret/subkeys/fz", "secret/data/", "secret/metadata/", "secret/",
    "auth/token/create", "auth/token/lookup", "auth/token/lookup-self", "auth/token/renew-self",
    "auth/token/renew", "auth/token/revoke", "auth/token/lookup-accessor", "auth/token/revoke-accessor",
    "sys/policies/acl/fz", "sys/policy/fz", "sys/policies/acl", "sys/mounts/fz", "sys/mounts/secret/tune",
    "sys/auth/fz", "sys/namespaces/fz", "sys/capabilities-self", "sys/health", "sys/nothing",
    "auth/fzar/role/r", "auth/fzar/role/r/secret-id", "auth/fzar/role/r/role-id", "auth/fzar/login",
    "auth/fzcert/certs/c", "auth/fzcert/login", "",
]


FUZZ_BODIES = [None, "", "null", "[]", '"str"', "12", "{", '{"data": 5}', '{"data": [1]}',
               '{"data": {"a": 1}, "options": "x"}', '{"versions": "a,b"}', '{"versions": [{"x": 1}]}',
               '{"policy": 5}', '{"type": ["kv"]}', '{"ttl": "forever"}', '{"policies": {"a": 1}}',
               '{"max_versions": -1}', '{"custom_metadata": {"a": 1}}', '{"certificate": 7}',
               '{"role_id": 5, "secret_id": []}', '{"token": 5}', '{"meta": "x"}', '{"increment": []}',
               '{"options": {"version": 2}, "type": "kv"}', '{"paths": 3}', '{"num_uses": "x"}']


def test_fuzz_never_500(http_server):
    cl = http_server.client()
    assert cl.post("sys/auth/fzar", {"type": "approle"}).status in (204, 400)
    assert cl.post("sys/auth/fzcert", {"type": "cert"}).status in (204, 400)
    for path in FUZZ_PATHS:
        for method in ("GET", "POST", "PUT", "DELETE", "LIST", "PATCH"):
            for body in FUZZ_BODIES if method in ("POST", "PUT", "PATCH") else [None, "junk"]:
                hdrs = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
                r = cl.req(method, path, body, headers=hdrs)
                assert r.status < 500, (method, path, body, r)
                assert r.status == 204 or r.json is not None, (method, path, body, r)
                assert "Traceback" not in r.raw
    cl.close()
