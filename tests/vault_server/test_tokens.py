"""Token auth of the Vault test server, over raw HTTP (vaultsim/auth_token.py).

Expected status codes and bodies follow HashiCorp Vault's HTTP API.
"""


from vault_test_helpers import DENIED, INVALID_TOKEN, make_token, put_policy


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


def test_token_ttl_expiry(start_server):
    # the server's clock moves forward on request (POST /__test__/clock): no sleep
    srv = start_server("--test-controls")
    c = srv.client()
    tok = make_token(c, ["default"], ttl="2s")
    assert c.get("auth/token/lookup-self", token=tok).status == 200
    assert c.control("POST", "clock", {"advance": 1}).status == 200
    assert c.get("auth/token/lookup-self", token=tok).json["data"]["ttl"] == 1
    c.control("POST", "clock", {"advance": 1.5})
    r = c.get("auth/token/lookup-self", token=tok)
    assert r.status == 403 and r.errors == [INVALID_TOKEN]
    assert c.get("auth/token/lookup-self").status == 200   # root has no TTL
    c.close()


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
