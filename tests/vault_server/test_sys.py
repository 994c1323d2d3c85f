"""sys/ endpoints and namespaces of the Vault test server, over raw HTTP (vaultsim/sysapi.py).

Expected status codes and bodies follow HashiCorp Vault's HTTP API.
"""

from vault_test_helpers import INVALID_TOKEN, put_policy


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


def test_invalid_namespace_name_is_400(c):
    # (this message once crashed the server into a 500: Python has no %q)
    r = c.post("sys/namespaces/bad%20name")
    assert r.status == 400 and r.errors == ['invalid namespace name "bad name"'], r
    r = c.post("sys/namespaces/sys")
    assert r.status == 400 and r.errors == ['"sys" is a reserved path and cannot be used as a namespace name']
