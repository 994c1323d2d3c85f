"""ACL policies of the Vault test server, over raw HTTP (vaultsim/policy.py).

Expected status codes and bodies follow HashiCorp Vault's HTTP API.
"""

import json

from vault_test_helpers import DENIED, make_token, put_policy


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
