"""Raw HTTP(S) tests of the Vault-compatible test server.

Expected status codes and bodies follow HashiCorp Vault's HTTP API.
"""

import hashlib
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import uuid

import pytest

from conftest import PYTHON, SERVER, VaultProc

DENIED = "1 error occurred:\n\t* permission denied\n\n"
INVALID_TOKEN = "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"
ENVELOPE_KEYS = {"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info",
                 "warnings", "auth"}


def make_token(c, policies, **kw):
    body = {"policies": policies}
    body.update(kw)
    r = c.post("auth/token/create", body)
    assert r.status == 200, r
    return r.json["auth"]["client_token"]


def put_policy(c, name, text, ns=None):
    r = c.req("PUT", "sys/policies/acl/" + name, {"policy": text}, ns=ns)
    assert r.status == 204, r


# ---------------------------------------------------------------- envelope / basics

def test_health_and_seal_status(c):
    r = c.get("sys/health", token="")
    assert r.status == 200
    assert r.json["initialized"] is True and r.json["sealed"] is False and r.json["standby"] is False
    assert "request_id" not in r.json
    r = c.get("sys/seal-status", token="")
    assert r.status == 200 and r.json["sealed"] is False and r.json["type"] == "shamir"
    r = c.req("HEAD", "sys/health", token="")
    assert r.status == 200 and r.raw == ""
    r = c.get("sys/health?activecode=299", token="")
    assert r.status == 299


def test_write_read_envelope_and_headers(c, uniq):
    r = c.post("secret/data/" + uniq, {"data": {"k": "v", "n": 1}})
    assert r.status == 200
    assert ENVELOPE_KEYS <= set(r.json)
    assert r.json["lease_id"] == "" and r.json["renewable"] is False and r.json["lease_duration"] == 0
    assert r.json["wrap_info"] is None and r.json["warnings"] is None and r.json["auth"] is None
    uuid.UUID(r.json["request_id"])
    d = r.json["data"]
    assert d["version"] == 1 and d["destroyed"] is False and d["deletion_time"] == ""
    assert d["custom_metadata"] is None and d["created_time"].endswith("Z")
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    assert int(r.headers["content-length"]) == len(r.raw.encode())

    r = c.get("secret/data/" + uniq)
    assert r.status == 200
    assert r.data["data"] == {"k": "v", "n": 1}
    assert r.data["metadata"]["version"] == 1


def test_missing_secret_is_404_empty_errors(c, uniq):
    r = c.get("secret/data/" + uniq)
    assert r.status == 404 and r.json == {"errors": []}
    r = c.get("secret/metadata/" + uniq)
    assert r.status == 404 and r.json == {"errors": []}


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


# ---------------------------------------------------------------- KV v2

def test_versions_and_read_version(c, uniq):
    for i in range(1, 4):
        r = c.post("secret/data/" + uniq, {"data": {"i": i}})
        assert r.data["version"] == i
    assert c.get("secret/data/%s?version=2" % uniq).data["data"] == {"i": 2}
    assert c.get("secret/data/%s?version=0" % uniq).data["data"] == {"i": 3}
    assert c.get("secret/data/%s?version=9" % uniq).json == {"errors": []}
    r = c.get("secret/data/%s?version=abc" % uniq)
    assert r.status == 400 and r.errors


def test_cas(c, uniq):
    p = "secret/data/" + uniq
    assert c.post(p, {"data": {"a": 1}, "options": {"cas": 0}}).status == 200
    r = c.post(p, {"data": {"a": 2}, "options": {"cas": 0}})
    assert r.status == 400
    assert r.json == {"errors": ["check-and-set parameter did not match the current version"]}
    assert c.post(p, {"data": {"a": 2}, "options": {"cas": 1}}).data["version"] == 2
    r = c.post("secret/data/" + uniq + "x", {"data": {}, "options": {"cas": 3}})
    assert r.status == 400


def test_cas_required(c, uniq):
    assert c.post("secret/metadata/" + uniq, {"cas_required": True}).status == 204
    r = c.post("secret/data/" + uniq, {"data": {"a": 1}})
    assert r.status == 400
    assert r.json == {"errors": ["check-and-set parameter required for this call"]}
    assert c.post("secret/data/" + uniq, {"data": {"a": 1}, "options": {"cas": 0}}).status == 200


def test_empty_and_missing_data(c, uniq):
    r = c.post("secret/data/" + uniq, {"data": {}})
    assert r.status == 200
    assert c.get("secret/data/" + uniq).data["data"] == {}
    r = c.post("secret/data/" + uniq, {"options": {}})
    assert r.status == 400 and r.json == {"errors": ["no data provided"]}
    r = c.post("secret/data/" + uniq, {"data": "notamap"})
    assert r.status == 400 and r.errors


def test_unknown_params_warn(c, uniq):
    r = c.post("secret/data/" + uniq, {"data": {"a": 1}, "zzz": 1, "aaa": 2})
    assert r.status == 200
    assert r.json["warnings"] == ["Endpoint ignored these unrecognized parameters: [aaa zzz]"]
    r = c.post("secret/metadata/" + uniq, {"max_versions": 3, "bogus": True})
    assert r.status == 200 and r.json["warnings"] and r.json["data"] is None


def test_put_is_same_as_post(c, uniq):
    r = c.req("PUT", "secret/data/" + uniq, {"data": {"x": 1}})
    assert r.status == 200 and r.data["version"] == 1


def test_patch(c, uniq):
    p = "secret/data/" + uniq
    c.post(p, {"data": {"a": 1, "b": {"c": 2, "d": 3}}})
    r = c.req("PATCH", p, {"data": {"a": None, "b": {"c": 9}, "e": 5}},
              headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 200 and r.data["version"] == 2
    assert c.get(p).data["data"] == {"b": {"c": 9, "d": 3}, "e": 5}
    r = c.req("PATCH", p, {"data": {"a": 1}})  # application/json
    assert r.status == 415
    assert "merge-patch+json" in r.errors[0]
    r = c.req("PATCH", "secret/data/" + uniq + "nope", {"data": {"a": 1}},
              headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 404
    r = c.req("PATCH", p, {"data": {"a": 1}, "options": {"cas": 1}},
              headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 400 and "check-and-set" in r.errors[0]


def test_soft_delete_undelete_destroy(c, uniq):
    p = "secret/data/" + uniq
    c.post(p, {"data": {"v": 1}})
    c.post(p, {"data": {"v": 2}})
    assert c.delete(p).status == 204
    r = c.get(p)
    assert r.status == 404
    assert r.data["data"] is None
    assert r.data["metadata"]["version"] == 2 and r.data["metadata"]["deletion_time"] != ""
    assert r.data["metadata"]["destroyed"] is False
    assert ENVELOPE_KEYS <= set(r.json)
    assert c.get(p + "?version=1").data["data"] == {"v": 1}

    assert c.post("secret/undelete/" + uniq, {"versions": [2]}).status == 204
    assert c.get(p).data["data"] == {"v": 2}

    assert c.post("secret/delete/" + uniq, {"versions": [1]}).status == 204
    assert c.get(p + "?version=1").status == 404

    assert c.post("secret/destroy/" + uniq, {"versions": [2]}).status == 204
    r = c.get(p)
    assert r.status == 404 and r.data["metadata"]["destroyed"] is True and r.data["data"] is None
    # undelete cannot bring back a destroyed version
    c.post("secret/undelete/" + uniq, {"versions": [2]})
    assert c.get(p).status == 404

    r = c.post("secret/delete/" + uniq, {})
    assert r.status == 400 and r.json == {"errors": ["no version number provided"]}
    r = c.post("secret/destroy/" + uniq, {"versions": []})
    assert r.status == 400


def test_metadata_read_write_delete(c, uniq):
    p = uniq + "/leaf"
    c.post("secret/data/" + p, {"data": {"a": 1}})
    c.post("secret/data/" + p, {"data": {"a": 2}})
    r = c.post("secret/metadata/" + p, {"max_versions": 5, "delete_version_after": "1h",
                                         "custom_metadata": {"owner": "me"}})
    assert r.status == 204 and r.raw == ""
    m = c.get("secret/metadata/" + p).data
    assert m["current_version"] == 2 and m["oldest_version"] == 0
    assert m["max_versions"] == 5 and m["cas_required"] is False
    assert m["delete_version_after"] == "1h0m0s"
    assert m["custom_metadata"] == {"owner": "me"}
    assert set(m["versions"]) == {"1", "2"}
    assert m["versions"]["1"]["destroyed"] is False and m["versions"]["1"]["deletion_time"] == ""
    # custom_metadata shows on versions written afterwards
    r = c.post("secret/data/" + p, {"data": {"a": 3}})
    assert r.data["custom_metadata"] == {"owner": "me"}
    # a delete_version_after schedules deletion
    assert r.data["deletion_time"] != ""
    r = c.req("PATCH", "secret/metadata/" + p, {"custom_metadata": {"team": "x", "owner": None}},
              headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 204
    assert c.get("secret/metadata/" + p).data["custom_metadata"] == {"team": "x"}
    assert c.delete("secret/metadata/" + p).status == 204
    assert c.get("secret/metadata/" + p).status == 404
    assert c.get("secret/data/" + p).status == 404


def test_max_versions_pruning(c, uniq):
    c.post("secret/metadata/" + uniq, {"max_versions": 2})
    for i in range(4):
        c.post("secret/data/" + uniq, {"data": {"i": i}})
    m = c.get("secret/metadata/" + uniq).data
    assert sorted(m["versions"]) == ["3", "4"]
    assert m["oldest_version"] == 3 and m["current_version"] == 4
    assert c.get("secret/data/%s?version=1" % uniq).json == {"errors": []}


def test_oldest_version_follows_vault_on_every_write(c, uniq):
    # Vault: once current - oldest >= max_versions, oldest = current - max_versions + 1
    c.post("secret/metadata/" + uniq, {"max_versions": 2})
    seen = []
    for i in range(4):
        c.post("secret/data/" + uniq, {"data": {"i": i}})
        m = c.get("secret/metadata/" + uniq).data
        seen.append((m["current_version"], m["oldest_version"], sorted(int(v) for v in m["versions"])))
    assert seen == [(1, 0, [1]), (2, 1, [1, 2]), (3, 2, [2, 3]), (4, 3, [3, 4])]
    # PATCH writes a version too
    r = c.req("PATCH", "secret/data/" + uniq, {"data": {"j": 1}},
              headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 200
    assert c.get("secret/metadata/" + uniq).data["oldest_version"] == 4
    # raising max_versions keeps the window; lowering it prunes on the next write
    c.post("secret/metadata/" + uniq, {"max_versions": 1})
    c.post("secret/data/" + uniq, {"data": {"i": 9}})
    m = c.get("secret/metadata/" + uniq).data
    assert (m["current_version"], m["oldest_version"], list(m["versions"])) == (6, 6, ["6"])


def test_default_max_versions_is_10(c, uniq):
    for i in range(12):
        c.post("secret/data/" + uniq, {"data": {"i": i}})
    m = c.get("secret/metadata/" + uniq).data
    assert len(m["versions"]) == 10 and m["oldest_version"] == 3
    other = uniq + "b"
    for i in range(10):
        c.post("secret/data/" + other, {"data": {"i": i}})
    assert c.get("secret/metadata/" + other).data["oldest_version"] == 1


def test_list(c, uniq):
    for k in ("a", "b/c", "b/d", "e/f/g"):
        c.post("secret/data/%s/%s" % (uniq, k), {"data": {"x": 1}})
    r = c.list("secret/metadata/" + uniq)
    assert r.status == 200 and r.data["keys"] == ["a", "b/", "e/"]
    r = c.get("secret/metadata/%s/?list=true" % uniq)
    assert r.data["keys"] == ["a", "b/", "e/"]
    assert c.list("secret/metadata/%s/b/" % uniq).data["keys"] == ["c", "d"]
    r = c.list("secret/metadata/%s/nothing" % uniq)
    assert r.status == 404 and r.json == {"errors": []}
    r = c.list("secret/data/" + uniq)
    assert r.status == 405


def test_config(c, http_server):
    cl = http_server.client()
    r = cl.get("kv2/config")
    assert r.status == 200
    assert r.data == {"cas_required": False, "delete_version_after": "0s", "max_versions": 0}
    assert cl.post("kv2/config", {"max_versions": 3, "delete_version_after": "90s"}).status == 204
    assert cl.get("kv2/config").data == {"cas_required": False, "delete_version_after": "1m30s",
                                         "max_versions": 3}
    for i in range(5):
        cl.post("kv2/data/pruned", {"data": {"i": i}})
    assert sorted(cl.get("kv2/metadata/pruned").data["versions"]) == ["3", "4", "5"]
    assert cl.post("kv2/config", {"max_versions": 0, "delete_version_after": 0}).status == 204
    cl.close()


def test_subkeys(c, uniq):
    c.post("secret/data/" + uniq, {"data": {"a": {"b": {"c": 1}}, "d": 2}})
    r = c.get("secret/subkeys/" + uniq)
    assert r.status == 200 and r.data["subkeys"] == {"a": {"b": {"c": None}}, "d": None}
    assert c.get("secret/subkeys/%s?depth=1" % uniq).data["subkeys"] == {"a": None, "d": None}


KV2_INVALID = ("Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate "
               "API endpoints to use. If using the Vault CLI, use 'vault kv %s' for this operation.")


def test_kv1_style_path_on_kv2_mount_is_404_with_vault_warning(c, uniq):
    # Clients tell v1 from v2 by this answer: 404, the full envelope, the warning.
    c.post("secret/data/" + uniq, {"data": {"a": 1}})
    for method, path, body, sub in (("GET", "secret/" + uniq, None, "get"),
                                    ("POST", "secret/" + uniq, {"a": 1}, "put"),
                                    ("PUT", "secret/bogus/thing", {"a": 1}, "put"),
                                    ("DELETE", "secret/" + uniq, None, "delete"),
                                    ("LIST", "secret/" + uniq, None, "list"),
                                    ("GET", "kv2/" + uniq, None, "get"),
                                    ("GET", "secret/", None, "get")):
        r = c.req(method, path, body)
        assert r.status == 404, (method, path, r)
        assert set(r.json) == ENVELOPE_KEYS | {"mount_type"}, r
        assert r.json["warnings"] == [KV2_INVALID % sub], r
        assert r.data is None and r.json["auth"] is None and "errors" not in r.json
    r = c.req("PATCH", "secret/" + uniq, {"a": 1}, headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 404 and r.json["warnings"] == [KV2_INVALID % "patch"]
    for root in ("data", "metadata", "delete", "undelete", "destroy"):
        r = c.get("secret/" + root)
        assert r.status == 404 and r.json["warnings"] == [
            "Non-listing operations on the root of a K/V v2 mount are not supported."], (root, r)
    # the v2 paths themselves are unchanged
    assert c.get("secret/data/" + uniq).data["data"] == {"a": 1}
    assert c.list("secret/metadata").status == 200
    assert c.get("secret/data/").json == {"errors": []}


def test_kv1_style_path_needs_acl_first(c, uniq):
    tok = make_token(c, ["default"])
    r = c.get("secret/" + uniq, token=tok)
    assert r.status == 403 and r.errors == [DENIED]


def test_mounts(c, uniq):
    r = c.get("sys/mounts")
    assert r.status == 200
    assert r.data["secret/"]["type"] == "kv" and r.data["secret/"]["options"] == {"version": "2"}
    assert "kv2/" in r.data and "secret/" in r.json
    mp = uniq + "kv"
    assert c.post("sys/mounts/" + mp, {"type": "kv", "options": {"version": "2"}}).status == 204
    r = c.post("sys/mounts/" + mp, {"type": "kv", "options": {"version": "2"}})
    assert r.status == 400 and r.errors == ["path is already in use at %s/" % mp]
    assert c.post(mp + "/data/x", {"data": {"a": 1}}).status == 200
    r = c.get("sys/mounts/%s/tune" % mp)
    assert r.status == 200 and r.data["options"] == {"version": "2"}
    assert r.data["default_lease_ttl"] == 2764800
    r = c.post("sys/mounts/" + uniq + "bad", {"type": "nosuch"})
    assert r.status == 400 and "nosuch" in r.errors[0]
    assert c.delete("sys/mounts/" + mp).status == 204
    assert c.get(mp + "/data/x").status == 404
    # kv v1 mount works too (no data/ prefix)
    assert c.post("sys/mounts/" + uniq + "v1", {"type": "kv"}).status == 204
    assert c.post(uniq + "v1/foo", {"a": "b"}).status == 204
    assert c.get(uniq + "v1/foo").data == {"a": "b"}


def test_ui_mounts(c):
    r = c.get("sys/internal/ui/mounts/secret/foo")
    assert r.status == 200 and r.data["path"] == "secret/" and r.data["options"]["version"] == "2"


# ---------------------------------------------------------------- bad input

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


# ---------------------------------------------------------------- tokens

def test_token_auth_errors(c, uniq):
    r = c.get("secret/data/" + uniq, token="")
    assert r.status == 403 and r.errors == [DENIED]
    r = c.get("secret/data/" + uniq, token="hvs.nope")
    assert r.status == 403 and r.errors == [INVALID_TOKEN]
    r = c.get("auth/token/lookup-self", headers={"Authorization": "Bearer root"}, token="")
    assert r.status == 200 and r.data["policies"] == ["root"]


def test_root_token_lookup_and_renew(c):
    r = c.get("auth/token/lookup-self")
    d = r.data
    assert d["id"] == "root" and d["policies"] == ["root"] and d["ttl"] == 0
    assert d["expire_time"] is None and d["path"] == "auth/token/root"
    r = c.post("auth/token/renew-self", {})
    assert r.status == 400 and r.errors == ["lease is not renewable"]


def test_token_create_lookup_renew_revoke(c):
    r = c.post("auth/token/create", {"policies": ["p1", "p2"], "ttl": "1h", "explicit_max_ttl": "2h",
                                     "meta": {"who": "test"}, "display_name": "Unit"})
    assert r.status == 200
    a = r.json["auth"]
    assert r.json["data"] is None
    assert a["policies"] == ["default", "p1", "p2"] and a["token_policies"] == a["policies"]
    assert a["lease_duration"] == 3600 and a["renewable"] is True and a["metadata"] == {"who": "test"}
    assert a["client_token"].startswith("hvs.") and a["accessor"]
    tok = a["client_token"]
    d = c.get("auth/token/lookup-self", token=tok).data
    assert d["id"] == tok and d["policies"] == ["default", "p1", "p2"] and d["creation_ttl"] == 3600
    assert d["display_name"] == "token-unit" and d["explicit_max_ttl"] == 7200 and d["renewable"] is True
    assert 3590 <= d["ttl"] <= 3600 and d["expire_time"]
    d2 = c.post("auth/token/lookup", {"token": tok}).data
    assert d2["accessor"] == a["accessor"]
    r = c.post("auth/token/lookup-accessor", {"accessor": a["accessor"]})
    assert r.data["id"] == "" and r.data["policies"] == ["default", "p1", "p2"]
    r = c.post("auth/token/renew-self", {"increment": "90m"}, token=tok)
    assert r.status == 200 and r.json["auth"]["lease_duration"] == 5400 and r.json["auth"]["client_token"] == tok
    r = c.post("auth/token/renew-self", {"increment": "5h"}, token=tok)
    assert r.status == 200 and 7100 < r.json["auth"]["lease_duration"] <= 7200
    assert r.json["warnings"] and "capped" in r.json["warnings"][0]
    assert c.post("auth/token/revoke-self", {}, token=tok).status == 204
    r = c.get("auth/token/lookup-self", token=tok)
    assert r.status == 403 and r.errors == [INVALID_TOKEN]
    r = c.post("auth/token/lookup", {"token": tok})
    assert r.status == 403 and r.errors == ["bad token"]


def test_token_non_renewable_and_num_uses(c, uniq):
    tok = make_token(c, ["default"], renewable=False, ttl="10m")
    r = c.post("auth/token/renew-self", {}, token=tok)
    assert r.status == 400 and r.errors == ["lease is not renewable"]
    tok = make_token(c, ["default"], num_uses=2)
    assert c.get("auth/token/lookup-self", token=tok).data["num_uses"] == 1
    assert c.get("auth/token/lookup-self", token=tok).status == 200
    assert c.get("auth/token/lookup-self", token=tok).status == 403


def test_token_ttl_expiry(c):
    tok = make_token(c, ["default"], ttl="1s")
    assert c.get("auth/token/lookup-self", token=tok).status == 200
    time.sleep(1.1)
    r = c.get("auth/token/lookup-self", token=tok)
    assert r.status == 403 and r.errors == [INVALID_TOKEN]


def test_child_token_policies_subset(c, uniq):
    put_policy(c, uniq, 'path "auth/token/create" { capabilities = ["update"] }')
    parent = make_token(c, [uniq])
    r = c.post("auth/token/create", {"policies": ["other"]}, token=parent)
    assert r.status == 400 and r.errors == ["child policies must be subset of parent"]
    r = c.post("auth/token/create", {"policies": [uniq]}, token=parent)
    assert r.status == 200
    child = r.json["auth"]["client_token"]
    # revoking the parent revokes the child
    c.post("auth/token/revoke", {"token": parent})
    assert c.get("auth/token/lookup-self", token=child).status == 403


def test_orphan_and_root_child(c):
    r = c.post("auth/token/create", {"policies": ["root"]})
    a = r.json["auth"]
    assert a["policies"] == ["root"] and a["lease_duration"] == 0 and a["renewable"] is False
    r = c.post("auth/token/create-orphan", {"policies": ["default"]})
    assert r.json["auth"]["orphan"] is True


# ---------------------------------------------------------------- policies

def test_policy_crud(c, uniq):
    text = 'path "secret/data/%s/*" {\n  capabilities = ["read", "list"]\n}\n' % uniq
    assert c.req("PUT", "sys/policies/acl/" + uniq, {"policy": text}).status == 204
    r = c.get("sys/policies/acl/" + uniq)
    assert r.data == {"name": uniq, "policy": text}
    r = c.list("sys/policies/acl")
    assert uniq in r.data["keys"] and "default" in r.data["keys"] and "root" in r.data["keys"]
    r = c.get("sys/policy/" + uniq)
    assert r.data["rules"] == text and r.json["name"] == uniq
    r = c.get("sys/policy")
    assert uniq in r.data["policies"]
    assert c.req("PUT", "sys/policy/" + uniq + "b", {"policy": text}).status == 204
    r = c.req("PUT", "sys/policies/acl/" + uniq + "bad", {"policy": 'path "x" { capabilities = ["fly"] }'})
    assert r.status == 400 and r.errors[0].startswith("failed to parse policy")
    r = c.req("PUT", "sys/policies/acl/" + uniq + "bad", {"policy": 'path "x" {'})
    assert r.status == 400
    r = c.req("PUT", "sys/policies/acl/" + uniq + "bad", {})
    assert r.status == 400 and r.errors == ["'policy' parameter not supplied or empty"]
    r = c.delete("sys/policies/acl/default")
    assert r.status == 400
    assert c.delete("sys/policies/acl/" + uniq).status == 204
    assert c.get("sys/policies/acl/" + uniq).status == 404


def test_policy_enforcement(c, uniq):
    put_policy(c, uniq, '''
# comment
path "secret/data/%(u)s/ro/*" { capabilities = ["read"] }
path "secret/data/%(u)s/rw/*" { capabilities = ["create", "read", "update", "delete", "patch"] }
path "secret/data/%(u)s/createonly" { capabilities = ["create"] }
path "secret/metadata/%(u)s/*" { capabilities = ["list", "read"] }
path "secret/data/%(u)s/+/deny" { capabilities = ["deny"] }
path "secret/+/%(u)s/plus/+" { capabilities = ["read"] }
''' % {"u": uniq})
    tok = make_token(c, [uniq])
    c.post("secret/data/%s/ro/a" % uniq, {"data": {"a": 1}})
    c.post("secret/data/%s/plus/z" % uniq, {"data": {"a": 1}})
    assert c.get("secret/data/%s/ro/a" % uniq, token=tok).status == 200
    r = c.post("secret/data/%s/ro/a" % uniq, {"data": {"a": 2}}, token=tok)
    assert r.status == 403 and r.errors == [DENIED]
    assert c.post("secret/data/%s/rw/a" % uniq, {"data": {"a": 2}}, token=tok).status == 200
    assert c.req("PATCH", "secret/data/%s/rw/a" % uniq, {"data": {"b": 1}}, token=tok,
                 headers={"Content-Type": "application/merge-patch+json"}).status == 200
    # create but not update
    assert c.post("secret/data/%s/createonly" % uniq, {"data": {}}, token=tok).status == 200
    assert c.post("secret/data/%s/createonly" % uniq, {"data": {}}, token=tok).status == 403
    assert c.list("secret/metadata/" + uniq, token=tok).status == 200
    # Vault priority rule 1: "rw/*" beats "+/deny" (its first wildcard comes later)
    assert c.get("secret/data/%s/rw/deny" % uniq, token=tok).status == 404
    assert c.get("secret/data/%s/xx/deny" % uniq, token=tok).status == 403
    assert c.get("secret/data/%s/plus/z" % uniq, token=tok).status == 200
    assert c.get("secret/data/other", token=tok).status == 403
    assert c.get("sys/mounts", token=tok).status == 403
    # default policy: self service
    assert c.get("auth/token/lookup-self", token=tok).status == 200
    r = c.post("sys/capabilities-self", {"paths": ["secret/data/%s/ro/x" % uniq]}, token=tok)
    assert r.data["capabilities"] == ["read"]
    # unknown route for a non-root token: permission denied first
    assert c.get("nomount/x", token=tok).status == 403


def test_policy_priority(c, uniq):
    put_policy(c, uniq, '''
path "secret/data/%(u)s/*" { capabilities = ["read"] }
path "secret/data/%(u)s/exact" { capabilities = ["deny"] }
path "secret/data/%(u)s/a/*" { capabilities = ["update", "create"] }
''' % {"u": uniq})
    tok = make_token(c, [uniq])
    c.post("secret/data/%s/exact" % uniq, {"data": {}})
    c.post("secret/data/%s/a/b" % uniq, {"data": {}})
    assert c.get("secret/data/%s/exact" % uniq, token=tok).status == 403
    assert c.get("secret/data/%s/a/b" % uniq, token=tok).status == 403  # longer glob wins
    assert c.post("secret/data/%s/a/b" % uniq, {"data": {}}, token=tok).status == 200


def test_legacy_and_json_policy_syntax(c, uniq):
    put_policy(c, uniq, 'path "secret/data/%s" {\n policy = "write"\n}' % uniq)
    put_policy(c, uniq + "j", json.dumps({"path": {"secret/data/%sj" % uniq: {"capabilities": ["read"]}}}))
    tok = make_token(c, [uniq, uniq + "j"])
    assert c.post("secret/data/" + uniq, {"data": {}}, token=tok).status == 200
    c.post("secret/data/%sj" % uniq, {"data": {}})
    assert c.get("secret/data/%sj" % uniq, token=tok).status == 200


# ---------------------------------------------------------------- auth methods

def test_sys_auth_and_approle(c, uniq):
    mp = "ar" + uniq
    r = c.post("sys/auth/" + mp, {"type": "approle"})
    assert r.status == 204
    r = c.get("sys/auth")
    assert r.data[mp + "/"]["type"] == "approle" and r.data["token/"]["type"] == "token"
    assert c.post("sys/auth/" + mp, {"type": "approle"}).status == 400
    put_policy(c, uniq, 'path "secret/data/%s" { capabilities = ["read"] }' % uniq)
    r = c.post("auth/%s/role/app" % mp, {"token_policies": [uniq], "token_ttl": "20m",
                                          "token_max_ttl": "30m", "secret_id_ttl": "10m"})
    assert r.status == 204
    role = c.get("auth/%s/role/app" % mp).data
    assert role["token_policies"] == [uniq] and role["token_ttl"] == 1200 and role["bind_secret_id"] is True
    assert c.list("auth/%s/role" % mp).data["keys"] == ["app"]
    role_id = c.get("auth/%s/role/app/role-id" % mp).data["role_id"]
    r = c.post("auth/%s/role/app/secret-id" % mp, {})
    sid = r.data["secret_id"]
    assert r.data["secret_id_accessor"] and r.data["secret_id_ttl"] == 600
    r = c.post("auth/%s/login" % mp, {"role_id": role_id, "secret_id": sid}, token="")
    assert r.status == 200
    a = r.json["auth"]
    assert a["policies"] == ["default", uniq] and a["token_policies"] == ["default", uniq]
    assert a["lease_duration"] == 1200 and a["renewable"] is True and a["metadata"] == {"role_name": "app"}
    c.post("secret/data/" + uniq, {"data": {"ok": True}})
    assert c.get("secret/data/" + uniq, token=a["client_token"]).data["data"] == {"ok": True}
    # renew is capped by token_max_ttl
    r = c.post("auth/token/renew-self", {"increment": "1h"}, token=a["client_token"])
    assert r.status == 200 and r.json["auth"]["lease_duration"] <= 1800
    # failures
    r = c.post("auth/%s/login" % mp, {"role_id": role_id, "secret_id": "wrong"}, token="")
    assert r.status == 400 and r.errors == ["invalid role or secret ID"]
    r = c.post("auth/%s/login" % mp, {"role_id": "nope", "secret_id": sid}, token="")
    assert r.status == 400 and r.errors == ["invalid role or secret ID"]
    r = c.post("auth/%s/login" % mp, {"secret_id": sid}, token="")
    assert r.status == 400 and r.errors == ["missing role_id"]
    r = c.post("auth/%s/login" % mp, {"role_id": role_id}, token="")
    assert r.status == 400 and r.errors == ["missing secret_id"]
    # num_uses on secret ids
    sid1 = c.post("auth/%s/role/app/secret-id" % mp, {"num_uses": 1}).data["secret_id"]
    assert c.post("auth/%s/login" % mp, {"role_id": role_id, "secret_id": sid1}, token="").status == 200
    assert c.post("auth/%s/login" % mp, {"role_id": role_id, "secret_id": sid1}, token="").status == 400
    # disabling the mount revokes its tokens
    assert c.delete("sys/auth/" + mp).status == 204
    assert c.get("auth/token/lookup-self", token=a["client_token"]).status == 403


def test_approle_no_secret_id(c, uniq):
    mp = "ar" + uniq
    c.post("sys/auth/" + mp, {"type": "approle"})
    c.post("auth/%s/role/r" % mp, {"bind_secret_id": False, "secret_id_bound_cidrs": "127.0.0.1/32",
                                    "token_policies": "default"})
    rid = c.get("auth/%s/role/r/role-id" % mp).data["role_id"]
    r = c.post("auth/%s/login" % mp, {"role_id": rid}, token="")
    assert r.status == 200 and r.json["auth"]["policies"] == ["default"]


def test_cert_auth_over_mtls(tls_server, certs, uniq):
    admin = tls_server.client()
    mp = "cert" + uniq
    assert admin.post("sys/auth/" + mp, {"type": "cert"}).status == 204
    put_policy(admin, uniq, 'path "secret/data/%s" { capabilities = ["read"] }' % uniq)
    ca = open(certs["ca.pem"]).read()
    r = admin.post("auth/%s/certs/web" % mp, {"certificate": ca, "token_policies": uniq, "token_ttl": 600,
                                               "allowed_common_names": ["kmsplug-*"]})
    assert r.status == 204
    d = admin.get("auth/%s/certs/web" % mp).data
    assert d["token_policies"] == [uniq] and d["token_ttl"] == 600 and d["certificate"] == ca
    admin.post("auth/%s/certs/strict" % mp, {"certificate": ca, "allowed_common_names": "someone-else"})
    admin.post("secret/data/" + uniq, {"data": {"tls": 1}})

    cl = tls_server.client(certs["client.pem"], certs["client.key"])
    r = cl.post("auth/%s/login" % mp, {"name": "web"}, token="")
    assert r.status == 200, r
    a = r.json["auth"]
    assert a["policies"] == ["default", uniq] and a["lease_duration"] == 600 and a["renewable"] is True
    assert a["metadata"]["cert_name"] == "web" and a["metadata"]["common_name"] == "kmsplug-client"
    assert cl.get("secret/data/" + uniq, token=a["client_token"]).data["data"] == {"tls": 1}
    # without a role name: any matching role
    r = cl.post("auth/%s/login" % mp, {}, token="")
    assert r.status == 200 and r.json["auth"]["metadata"]["cert_name"] == "web"
    r = cl.post("auth/%s/login" % mp, {"name": "strict"}, token="")
    assert r.status == 400
    assert r.errors == ["no chain matching all constraints could be found for this login certificate"]
    r = cl.post("auth/%s/login" % mp, {"name": "missing"}, token="")
    assert r.status == 400 and r.errors == ["invalid certificate or no client certificate supplied"]
    cl.close()
    # no client certificate at all
    r = admin.post("auth/%s/login" % mp, {"name": "web"}, token="")
    assert r.status == 400 and r.errors == ["client certificate must be supplied"]
    # a role trusting only the leaf certificate itself
    admin.post("auth/%s/certs/leaf" % mp, {"certificate": open(certs["client.pem"]).read()})
    cl = tls_server.client(certs["client.pem"], certs["client.key"])
    assert cl.post("auth/%s/login" % mp, {"name": "leaf"}, token="").status == 200
    cl.close()
    # a role trusting another CA does not accept our client cert
    admin.post("auth/%s/certs/other" % mp, {"certificate": open(certs["other-ca.pem"]).read()})
    cl = tls_server.client(certs["client.pem"], certs["client.key"])
    r = cl.post("auth/%s/login" % mp, {"name": "other"}, token="")
    assert r.status == 400 and r.errors == ["invalid certificate or no client certificate supplied"]
    cl.close()
    r = admin.post("auth/%s/certs/bad" % mp, {"certificate": "not a pem"})
    assert r.status == 400
    admin.close()


def test_tls_rejects_untrusted_and_expired_client_certs(tls_server, certs):
    for name in ("untrusted-client", "expired-client"):
        cl = tls_server.client(certs[name + ".pem"], certs[name + ".key"])
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            cl.get("sys/health", token="")
        cl.close()
    with pytest.raises(ssl.SSLError):
        tls_server.client(certs["client.pem"], certs["wrong-key.pem"])._connect()


def test_cert_login_over_plain_http(c, uniq):
    mp = "cert" + uniq
    c.post("sys/auth/" + mp, {"type": "cert"})
    r = c.post("auth/%s/login" % mp, {}, token="")
    assert r.status == 400 and r.errors == ["tls connection required"]


def test_tls_request_log_subject(tls_server, certs):
    cl = tls_server.client(certs["client.pem"], certs["client.key"])
    cl.control("DELETE", "requests")
    cl.get("sys/health", token="")
    log = cl.control("GET", "requests").json["requests"]
    assert log[-1]["client_cert_subject"] == "O=kmsplug tests,CN=kmsplug-client"
    cl.close()


# ---------------------------------------------------------------- namespaces

def test_namespaces(c, uniq):
    r = c.post("secret/data/" + uniq, {"data": {"where": "root"}}, ns="team1")
    assert r.status == 200
    assert c.get("secret/data/" + uniq).status == 404            # not in root
    assert c.get("team1/secret/data/" + uniq).data["data"] == {"where": "root"}
    c.post("sub/secret/data/" + uniq, {"data": {"where": "sub"}}, ns="team1")
    assert c.get("secret/data/" + uniq, ns="team1/sub").data["data"] == {"where": "sub"}
    assert c.get("team1/sub/secret/data/" + uniq).data["data"] == {"where": "sub"}
    r = c.get("secret/data/x", ns="nosuch")
    assert r.status == 404 and "no handler for route" in r.errors[0]
    # namespace tokens are valid in their namespace and its children only
    r = c.post("auth/token/create", {"policies": ["default"]}, ns="team1")
    tok = r.json["auth"]["client_token"]
    assert c.get("auth/token/lookup-self", token=tok, ns="team1").status == 200
    r = c.get("auth/token/lookup-self", token=tok)
    assert r.status == 403 and r.errors == [INVALID_TOKEN]
    # policies are per namespace
    put_policy(c, uniq, 'path "secret/data/*" { capabilities = ["read"] }', ns="team1")
    assert c.get("sys/policies/acl/" + uniq).status == 404
    put_policy(c, uniq + "s", 'path "sub/secret/data/*" { capabilities = ["read"] }', ns="team1")
    tok = c.post("auth/token/create", {"policies": [uniq, uniq + "s"]}, ns="team1").json["auth"]["client_token"]
    assert c.get("secret/data/" + uniq, token=tok, ns="team1").status == 200
    # a parent-namespace token in a child namespace: policy paths are relative to the token's namespace
    assert c.get("secret/data/" + uniq, token=tok, ns="team1/sub").status == 200
    assert c.get("team1/sub/secret/data/" + uniq, token=tok).status == 200
    assert c.get("sys/mounts", token=tok, ns="team1/sub").status == 403
    # create / list / delete namespaces
    r = c.post("sys/namespaces/" + uniq)
    assert r.status == 200 and r.data["path"] == uniq + "/"
    assert uniq + "/" in c.list("sys/namespaces").data["keys"]
    assert c.post("secret/data/x", {"data": {"a": 1}}, ns=uniq).status == 200
    r = c.post("sys/namespaces/child", ns=uniq)
    assert r.data["path"] == "%s/child/" % uniq
    assert c.get("sys/namespaces/" + uniq).data["id"]
    assert c.delete("sys/namespaces/" + uniq).status == 400
    assert c.delete("sys/namespaces/child", ns=uniq).status in (200, 204)
    assert c.delete("sys/namespaces/" + uniq).status in (200, 204)
    assert c.get("secret/data/x", ns=uniq).status == 404


def test_namespace_auth_methods_are_separate(c, uniq):
    mp = "ar" + uniq
    assert c.post("sys/auth/" + mp, {"type": "approle"}, ns="team1").status == 204
    assert mp + "/" not in c.get("sys/auth").data
    assert mp + "/" in c.get("sys/auth", ns="team1").data
    c.post("auth/%s/role/r" % mp, {}, ns="team1")
    rid = c.get("auth/%s/role/r/role-id" % mp, ns="team1").data["role_id"]
    sid = c.post("auth/%s/role/r/secret-id" % mp, ns="team1").data["secret_id"]
    r = c.post("team1/auth/%s/login" % mp, {"role_id": rid, "secret_id": sid}, token="")
    assert r.status == 200
    tok = r.json["auth"]["client_token"]
    assert c.get("auth/token/lookup-self", token=tok, ns="team1").data["namespace_path"] == "team1/"


# ---------------------------------------------------------------- test controls

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
        with pytest.raises((ConnectionError, OSError, Exception)):
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


# ---------------------------------------------------------------- process / CLI

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
