"""AppRole auth of the Vault test server, over raw HTTP (vaultsim/auth_approle.py).

Expected status codes and bodies follow HashiCorp Vault's HTTP API.
"""

from vault_test_helpers import put_policy


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
