"""Test controls (/__test__/): faults, request log, stats (tests/testserver) and Vault's
seal, standby and token controls (vaultsim/controls.py).

Expected status codes and bodies follow HashiCorp Vault's HTTP API.
"""

import hashlib
import http.client
import json
import time

import pytest

from vault_test_helpers import INVALID_TOKEN


def test_controls_off_by_default(start_server):
    srv = start_server()
    cl = srv.client()
    assert cl.control("GET", "requests").status == 404
    assert cl.control("POST", "faults", {"status": 500}).status == 404
    cl.close()


def test_faults(start_server):
    srv = start_server("--test-controls")
    cl = srv.client()
    r = cl.control("POST", "faults", {"method": "GET", "path": "^/v1/secret/data/f", "status": 503,
                                      "body": {"errors": ["injected"]}, "headers": {"Retry-After": "1"},
                                      "times": 2})
    assert r.status == 200 and r.json["id"] == 1
    cl.post("secret/data/f1", {"data": {"a": 1}})  # POST not matched
    for _ in range(2):
        r = cl.get("secret/data/f1")
        assert r.status == 503 and r.json == {"errors": ["injected"]} and r.headers["retry-after"] == "1"
    assert cl.get("secret/data/f1").status == 200
    cl.control("POST", "faults", {"path": "raw", "status": 502, "raw_body": "<html>bad gateway</html>"})
    r = cl.get("secret/data/raw")
    assert r.status == 502 and r.raw == "<html>bad gateway</html>" and r.headers["content-type"].startswith("text/plain")
    cl.control("POST", "faults", {"path": "slow", "delay_ms": 300})
    t0 = time.time()
    r = cl.get("secret/data/slow")
    assert r.status == 404 and time.time() - t0 >= 0.3
    cl.control("POST", "faults", {"path": "drop", "drop": True, "times": -1})
    cl.close()  # fresh connections: the helper client must not retry
    for _ in range(2):
        with pytest.raises((ConnectionError, http.client.HTTPException)):  # closed, no answer
            cl.get("secret/data/drop")
        cl.close()
    faults = cl.control("GET", "faults").json["faults"]
    assert [f["id"] for f in faults] == [1, 2, 3, 4]
    assert cl.control("DELETE", "faults").status == 200
    assert cl.control("GET", "faults").json["faults"] == []
    assert cl.get("secret/data/drop").status == 404
    # faulted requests are logged
    paths = [e["path"] for e in cl.control("GET", "requests").json["requests"]]
    assert paths.count("/v1/secret/data/drop") == 3
    cl.close()


def test_seal_and_standby(start_server):
    srv = start_server("--test-controls")
    cl = srv.client()
    assert cl.control("POST", "seal", {"sealed": True}).status == 200
    r = cl.get("secret/data/x")
    assert r.status == 503 and r.json == {"errors": ["Vault is sealed"]}
    r = cl.get("sys/health", token="")
    assert r.status == 503 and r.json["sealed"] is True
    assert cl.get("sys/seal-status", token="").json["sealed"] is True
    cl.control("POST", "seal", {"sealed": False})
    assert cl.get("secret/data/x").status == 404
    cl.control("POST", "standby", {"redirect_to": "https://127.0.0.1:1", "status": 307})
    r = cl.get("secret/data/x?version=2")
    assert r.status == 307 and r.headers["location"] == "https://127.0.0.1:1/v1/secret/data/x?version=2"
    r = cl.get("sys/health", token="")
    assert r.status == 429 and r.json["standby"] is True
    assert cl.get("sys/health?standbyok=true", token="").status == 200
    cl.control("POST", "standby", {"redirect_to": None})
    assert cl.get("secret/data/x").status == 404
    cl.close()


def test_token_controls(start_server):
    srv = start_server("--test-controls", "--root-token", "s3cr3t")
    cl = srv.client(token="s3cr3t")
    assert cl.get("auth/token/lookup-self", token="root").status == 403
    a = cl.post("auth/token/create", {"policies": ["default"]}).json["auth"]
    b = cl.post("auth/token/create", {"policies": ["default"]}).json["auth"]
    d = cl.post("auth/token/create", {"policies": ["default"]}).json["auth"]
    assert cl.control("POST", "tokens/expire", {"token": a["client_token"]}).json["affected"] == 1
    r = cl.get("auth/token/lookup-self", token=a["client_token"])
    assert r.status == 403 and r.errors == [INVALID_TOKEN]
    cl.control("POST", "tokens/revoke", {"accessor": b["accessor"]})
    assert cl.get("auth/token/lookup-self", token=b["client_token"]).status == 403
    cl.control("POST", "tokens/expire", {"all_non_root": True})
    assert cl.get("auth/token/lookup-self", token=d["client_token"]).status == 403
    assert cl.get("auth/token/lookup-self").status == 200
    cl.close()


def test_request_log_and_stats(start_server):
    srv = start_server("--test-controls")
    cl = srv.client()
    cl.control("DELETE", "stats")
    cl.get("secret/data/a?version=1", token="tok-1")
    cl.post("secret/data/b", {"data": {"k": "v"}}, headers={"Authorization": "Bearer tok-2"}, token="")
    log = cl.control("GET", "requests").json["requests"]
    assert [e["method"] for e in log] == ["GET", "POST"]
    e0, e1 = log
    assert e0["path"] == "/v1/secret/data/a" and e0["query"] == "version=1"
    assert e0["headers"]["X-Vault-Token"] == "sha256:" + hashlib.sha256(b"tok-1").hexdigest()
    assert e1["headers"]["Authorization"] == "Bearer sha256:" + hashlib.sha256(b"tok-2").hexdigest()
    assert json.loads(e1["body"]) == {"data": {"k": "v"}}
    assert "tok-1" not in json.dumps(log) and "tok-2" not in json.dumps(log)
    assert e0["connection_id"] == e1["connection_id"] and e1["seq"] == e0["seq"] + 1
    assert e0["client_cert_subject"] is None
    st = cl.control("GET", "stats").json
    # one keep-alive connection, opened before the stats were reset
    assert st["requests"] == 2 and st["connections"] == 0 and st["tls_handshakes"] == 0
    cl.control("DELETE", "requests")
    assert cl.control("GET", "requests").json["requests"] == []
    cl.close()


def test_tls_stats(tls_server, certs):
    cl = tls_server.client()
    cl.control("DELETE", "stats")
    for _ in range(3):
        cl.get("sys/health", token="")
    cl.close()
    cl = tls_server.client()
    cl.get("sys/health", token="")
    st = cl.control("GET", "stats").json
    assert st["tls_handshakes"] == 1 and st["connections"] == 1
    cl.close()


def test_tls_request_log_subject(tls_server, certs):
    cl = tls_server.client(certs["client.pem"], certs["client.key"])
    cl.control("DELETE", "requests")
    cl.get("sys/health", token="")
    log = cl.control("GET", "requests").json["requests"]
    assert log[-1]["client_cert_subject"] == "O=kmsplug tests,CN=kmsplug-client"
    cl.close()


def test_clock_control(start_server, uniq):
    srv = start_server("--test-controls")
    cl = srv.client()
    assert cl.post("secret/data/" + uniq, {"data": {"a": 1}}).status == 200
    assert cl.post("secret/metadata/" + uniq, {"delete_version_after": "10s"}).status == 204
    assert cl.post("secret/data/" + uniq, {"data": {"a": 2}}).status == 200
    before = cl.get("sys/health", token="").json["server_time_utc"]
    r = cl.control("POST", "clock", {"advance": 11})
    assert r.status == 200 and r.json["now"] >= before + 11
    assert cl.get("sys/health", token="").json["server_time_utc"] >= before + 11
    r = cl.get("secret/data/" + uniq)           # version 2 reached its delete_version_after
    assert r.status == 404 and r.json["data"]["metadata"]["version"] == 2
    assert cl.get("secret/data/%s?version=1" % uniq).json["data"]["data"] == {"a": 1}
    for bad_body in ({"advance": -1}, {"advance": "1"}, {"advance": True}):
        r = cl.control("POST", "clock", bad_body)
        assert r.status == 400 and "advance" in r.json["errors"][0], r
    cl.close()

