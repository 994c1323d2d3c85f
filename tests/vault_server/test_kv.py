"""KV v2 (and v1) engine of the Vault test server, over raw HTTP (vaultsim/kv.py).

Expected status codes and bodies follow HashiCorp Vault's HTTP API.
"""

import uuid

from vault_test_helpers import DENIED, ENVELOPE_KEYS, make_token


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


def test_custom_metadata_limits_are_400_with_go_quoting(c, uniq):
    # (these messages once crashed the server into a 500: Python has no %q)
    r = c.post("secret/metadata/" + uniq, {"custom_metadata": {"k" * 129: "v"}})
    assert r.status == 400, r
    assert r.errors == ['custom_metadata validation failed: 1 error occurred:\n'
                        '\t* length of key "%s" is 129 but max is 128\n\n' % ("k" * 129)]
    r = c.post("secret/metadata/" + uniq, {"custom_metadata": {"k": "v" * 513}})
    assert r.status == 400 and 'length of value for key "k" is 513 but max is 512' in r.errors[0]
