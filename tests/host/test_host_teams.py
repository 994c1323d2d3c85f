"""kms-host teams end to end: a team's secret-manager settings (namespace,
mount, path prefix) kept in the host's database, `key generate --team T`
storing the key there through the hashicorp_vault plugin's ABI 1.1 location
options, and every later delete/regenerate -- queued or not -- going to the
location the key remembers, even after the team's settings changed.

Runs against tests/vault_server over TLS with Enterprise-style namespaces,
checked through the server's HTTP API with X-Vault-Namespace. The same file
runs on both stores: ctest host_teams (SQLite) and host_teams_pg
(KMS_TEST_STORE=postgresql, a fresh PostgreSQL database per test)."""

import json
import re
import sqlite3
import urllib.error
import urllib.request

import pytest

import kms_host_helpers as H
from kms_host_helpers import (EXIT_CONFIG, EXIT_FAIL, EXIT_OK, EXIT_QUEUED, EXIT_USAGE,
                              VAULT_PLUGIN, VAULT_SERVER, Host, parse_fields)


@pytest.fixture(scope="module", autouse=True)
def _need_vault_plugin_and_server():
    # A missing plugin or server fails the suite; it never skips it green.
    if not VAULT_PLUGIN.exists():
        pytest.fail(f"{VAULT_PLUGIN} is not built (cmake --build build)", pytrace=False)
    if not VAULT_SERVER.exists():
        pytest.fail(f"{VAULT_SERVER} is missing", pytrace=False)


CONFIG = """\
general_settings:
  key_management_system: {kms}
  key_management_settings:
    store_virtual_keys: true
    access_mode: read_and_write
    prefix_for_stored_virtual_keys: litellm/
"""


def make_host(tmp_path, vault, kms="hashicorp_vault"):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(kms=kms))
    return Host(cfg, env=vault.plugin_env())


def ns_request(vault, method, path, ns=None, body=None):
    """One request to the Vault server as root, in namespace `ns`."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(vault.url + path, data=data, method=method)
    req.add_header("X-Vault-Token", "root")
    if ns:
        req.add_header("X-Vault-Namespace", ns)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, context=vault.ctx, timeout=10) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw else None)


def make_namespaces(vault, *names):
    for n in names:
        st, body = ns_request(vault, "POST", f"/v1/sys/namespaces/{n}")
        assert st in (200, 204), (st, body)


def read_at(vault, name, ns=None, mount="secret"):
    """The value of <mount>/data/<name> in namespace `ns`, None when absent."""
    st, body = ns_request(vault, "GET", f"/v1/{mount}/data/{name}", ns=ns)
    if st == 404:
        return None
    assert st == 200, (st, body)
    return body["data"]["data"]["key"]


def key_locations(tmp_path):
    """(alias, team_id, location) of every key, of the test's store."""
    sql = "SELECT alias, team_id, location FROM {}virtual_keys ORDER BY created_at, key_id"
    return _rows(tmp_path, sql)


def outbox_locations(tmp_path):
    sql = "SELECT op, secret_name, location FROM {}outbox ORDER BY seq"
    return _rows(tmp_path, sql)


def _rows(tmp_path, sql):
    if H.STORE == "postgresql":
        return [tuple(r) for r in H._pg_rows(sql.format("kms_host_"))]
    con = sqlite3.connect(tmp_path / "kms-host.db")
    try:
        return [tuple(r) for r in con.execute(sql.format("")).fetchall()]
    finally:
        con.close()


# --- the promise: a team key lands in its namespace and is deleted from there -------

def test_team_key_lands_in_team_namespace_and_is_deleted_there(tmp_path, vault):
    make_namespaces(vault, "team-a", "team-b")
    h = make_host(tmp_path, vault)
    p = h.run("team", "add", "acme", "--namespace", "team-a", check=EXIT_OK)
    assert "location: namespace=team-a" in p.stdout
    g = parse_fields(h.run("key", "generate", "--alias", "k1", "--team", "acme",
                           check=EXIT_OK).stdout)
    assert g["team"] == "acme" and g["location"] == "namespace=team-a"
    assert read_at(vault, "litellm/k1", ns="team-a") == g["key"]
    assert read_at(vault, "litellm/k1") is None  # not in the default place
    assert key_locations(tmp_path) == [("k1", "acme", "namespace=team-a")]

    # The team moves; its existing key stays where it was written.
    h.run("team", "update", "acme", "--namespace", "team-b", check=EXIT_OK)
    g2 = parse_fields(h.run("key", "generate", "--alias", "k2", "--team", "acme",
                            check=EXIT_OK).stdout)
    assert read_at(vault, "litellm/k2", ns="team-b") == g2["key"]
    assert read_at(vault, "litellm/k2", ns="team-a") is None

    h.run("key", "delete", "--alias", "k1", check=EXIT_OK)
    assert read_at(vault, "litellm/k1", ns="team-a") is None
    assert read_at(vault, "litellm/k2", ns="team-b") == g2["key"]  # untouched
    assert outbox_locations(tmp_path) == []


def test_regenerate_goes_to_the_remembered_location(tmp_path, vault):
    make_namespaces(vault, "team-a", "team-b")
    h = make_host(tmp_path, vault)
    h.run("team", "add", "acme", "--namespace", "team-a", "--path-prefix", "gw",
          check=EXIT_OK)
    g = parse_fields(h.run("key", "generate", "--team", "acme", check=EXIT_OK).stdout)
    name = g["secret_name"]
    # path_prefix: the plugin puts the name under gw/ in the team's namespace
    assert read_at(vault, f"gw/{name}", ns="team-a") == g["key"]
    h.run("team", "update", "acme", "--namespace", "team-b", check=EXIT_OK)
    r = parse_fields(h.run("key", "regenerate", "--key", g["key"], check=EXIT_OK).stdout)
    assert r["key"] != g["key"] and r["location"] == "namespace=team-a, path_prefix=gw"
    assert read_at(vault, f"gw/{name}", ns="team-a") == r["key"]
    assert read_at(vault, f"gw/{name}", ns="team-b") is None


def test_team_mount_setting(tmp_path, vault):
    make_namespaces(vault, "team-m")
    st, body = ns_request(vault, "POST", "/v1/sys/mounts/teamkv", ns="team-m",
                          body={"type": "kv", "options": {"version": "2"}})
    assert st in (200, 204), (st, body)
    h = make_host(tmp_path, vault)
    h.run("team", "add", "m", "--namespace", "team-m", "--mount", "teamkv", check=EXIT_OK)
    g = parse_fields(h.run("key", "generate", "--alias", "mk", "--team", "m",
                           check=EXIT_OK).stdout)
    assert read_at(vault, "litellm/mk", ns="team-m", mount="teamkv") == g["key"]
    assert read_at(vault, "litellm/mk", ns="team-m") is None
    h.run("key", "delete", "--alias", "mk", check=EXIT_OK)
    assert read_at(vault, "litellm/mk", ns="team-m", mount="teamkv") is None


# --- queued work keeps its location ------------------------------------------------

def test_queued_ops_are_delivered_to_their_location_after_unseal(tmp_path, vault):
    make_namespaces(vault, "team-a", "team-b")
    h = make_host(tmp_path, vault)
    h.run("team", "add", "acme", "--namespace", "team-a", check=EXIT_OK)
    old = parse_fields(h.run("key", "generate", "--alias", "old", "--team", "acme",
                             check=EXIT_OK).stdout)
    vault.seal()
    p = h.run("key", "generate", "--alias", "new", "--team", "acme", check=EXIT_QUEUED)
    new = parse_fields(p.stdout)
    assert "(at namespace=team-a)" in p.stderr  # the error names where it was going
    h.run("key", "delete", "--alias", "old", check=EXIT_QUEUED)
    assert outbox_locations(tmp_path) == [("write", "litellm/new", "namespace=team-a"),
                                          ("delete", "litellm/old", "namespace=team-a")]
    # The team changes while the work is queued: the work does not follow it.
    h.run("team", "update", "acme", "--namespace", "team-b", check=EXIT_OK)
    vault.seal(False)
    assert "delivered: 2" in h.run("sync", check=EXIT_OK).stdout
    assert read_at(vault, "litellm/new", ns="team-a") == new["key"]
    assert read_at(vault, "litellm/old", ns="team-a") is None
    assert read_at(vault, "litellm/new", ns="team-b") is None
    assert old["key"] != new["key"]


def test_same_name_in_two_locations_are_two_secrets(tmp_path, vault):
    """A queued write supersedes only writes of the same name in the same
    location: a default-location write and a team one both land."""
    make_namespaces(vault, "team-a")
    h = make_host(tmp_path, vault)
    h.run("team", "add", "acme", "--namespace", "team-a", check=EXIT_OK)
    vault.seal()
    a = parse_fields(h.run("key", "generate", "--team", "acme", check=EXIT_QUEUED).stdout)
    b = parse_fields(h.run("key", "generate", check=EXIT_QUEUED).stdout)
    assert [o[2] for o in outbox_locations(tmp_path)] == ["namespace=team-a", ""]
    vault.seal(False)
    h.run("sync", check=EXIT_OK)
    assert read_at(vault, a["secret_name"], ns="team-a") == a["key"]
    assert read_at(vault, b["secret_name"]) == b["key"]
    assert read_at(vault, a["secret_name"]) is None


# --- reconcile: every location a key can live in -----------------------------------

def write_at(vault, name, value, ns=None):
    st, body = ns_request(vault, "POST", f"/v1/secret/data/{name}", ns=ns,
                          body={"data": {"key": value}})
    assert st in (200, 204), (st, body)


def test_reconcile_visits_every_location(tmp_path, vault):
    """Orphans and missing secrets are found in the default location, in each
    team's current location (even one with no key yet), and in a location
    only a key remembers (its team moved on); a key owns (location, name),
    so its name in another location is an orphan there. Each finding names
    its location, and --delete-orphans deletes each orphan where it is."""
    make_namespaces(vault, "team-a", "team-b", "team-c")
    h = make_host(tmp_path, vault)
    h.run("team", "add", "acme", "--namespace", "team-a", check=EXIT_OK)
    k1 = parse_fields(h.run("key", "generate", "--alias", "k1", "--team", "acme",
                            check=EXIT_OK).stdout)
    h.run("team", "update", "acme", "--namespace", "team-b", check=EXIT_OK)
    h.run("key", "generate", "--alias", "k2", "--team", "acme", check=EXIT_OK)
    h.run("team", "add", "beta", "--namespace", "team-c", check=EXIT_OK)
    k0 = parse_fields(h.run("key", "generate", "--alias", "k0", check=EXIT_OK).stdout)
    p = h.run("reconcile", check=EXIT_OK)
    assert "location default prefix=litellm/ listed=1 keys=1\n" in p.stdout, p.stdout
    assert "location namespace=team-b prefix=litellm/ listed=1 keys=1 teams=acme\n" in p.stdout
    assert "location namespace=team-c prefix=litellm/ listed=0 keys=0 teams=beta\n" in p.stdout
    assert "location namespace=team-a prefix=litellm/ listed=1 keys=1\n" in p.stdout

    write_at(vault, "litellm/stray-a", "x", ns="team-a")  # only k1 leads here now
    write_at(vault, "litellm/stray-c", "x", ns="team-c")  # beta's, no key yet
    vault.write("litellm/k1", "sk-copy")                  # k1's name, wrong place
    st, _ = ns_request(vault, "DELETE", "/v1/secret/data/litellm/k2", ns="team-b")
    assert st in (200, 204)
    p = h.run("reconcile", check=EXIT_FAIL)
    assert "orphan litellm/stray-a at namespace=team-a: no key owns it -- kept" in p.stdout
    assert "orphan litellm/stray-c at namespace=team-c: no key owns it -- kept" in p.stdout
    assert "orphan litellm/k1 at default: no key owns it -- kept" in p.stdout
    assert "missing litellm/k2 at namespace=team-b: key " in p.stdout and "-- lost" in p.stdout
    assert "3 orphan(s), 1 key(s) whose secret is lost" in p.stderr
    j = json.loads(h.run("reconcile", "--json", check=EXIT_FAIL).stdout)
    assert sorted((o["name"], json.dumps(o["location"])) for o in j["orphans"]) == [
        ("litellm/k1", "null"), ("litellm/stray-a", '{"namespace": "team-a"}'),
        ("litellm/stray-c", '{"namespace": "team-c"}')]
    assert [(m["name"], m["location"]) for m in j["missing"]] == [("litellm/k2",
                                                                   {"namespace": "team-b"})]
    assert {json.dumps(loc["location"]): loc["teams"] for loc in j["locations"]} == {
        "null": [], '{"namespace": "team-b"}': ["acme"], '{"namespace": "team-c"}': ["beta"],
        '{"namespace": "team-a"}': []}

    p = h.run("reconcile", "--delete-orphans", check=EXIT_FAIL)  # k2 stays lost
    assert p.stdout.count("no key owns it -- deleted") == 3, p.stdout
    assert read_at(vault, "litellm/stray-a", ns="team-a") is None
    assert read_at(vault, "litellm/stray-c", ns="team-c") is None
    assert vault.read("litellm/k1") is None
    assert read_at(vault, "litellm/k1", ns="team-a") == k1["key"]  # the owner's copy stays
    assert vault.read("litellm/k0") == k0["key"]
    assert outbox_locations(tmp_path) == []
    h.run("key", "regenerate", "--alias", "k2", check=EXIT_OK)  # the fix it names
    h.run("reconcile", check=EXIT_OK)


def test_reconcile_redelivers_a_queued_team_write_to_its_location(tmp_path, vault):
    make_namespaces(vault, "team-a", "team-b")
    h = make_host(tmp_path, vault)
    h.run("team", "add", "acme", "--namespace", "team-a", check=EXIT_OK)
    vault.seal()
    g = parse_fields(h.run("key", "generate", "--alias", "late", "--team", "acme",
                           check=EXIT_QUEUED).stdout)
    vault.seal(False)
    h.run("team", "update", "acme", "--namespace", "team-b", check=EXIT_OK)
    p = h.run("reconcile", check=EXIT_OK)
    assert "missing litellm/late at namespace=team-a: key " in p.stdout
    assert "(its write was queued as #" in p.stdout and "-- redelivered" in p.stdout
    assert read_at(vault, "litellm/late", ns="team-a") == g["key"]
    assert read_at(vault, "litellm/late", ns="team-b") is None


def test_key_list_shows_team_and_location(tmp_path, vault):
    make_namespaces(vault, "team-a", "team-b")
    h = make_host(tmp_path, vault)
    h.run("team", "add", "acme", "--namespace", "team-a", "--path-prefix", "gw", check=EXIT_OK)
    h.run("key", "generate", "--alias", "t1", "--team", "acme", check=EXIT_OK)
    h.run("team", "update", "acme", "--namespace", "team-b", check=EXIT_OK)
    h.run("key", "generate", "--alias", "plain", check=EXIT_OK)
    vault.seal()
    h.run("key", "generate", "--alias", "t2", "--team", "acme", check=EXIT_QUEUED)
    out = h.run("key", "list", check=EXIT_OK).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["KEY_ID", "ALIAS", "SECRET_NAME", "TEAM", "LOCATION", "UPDATED"]
    rows = {ln.split()[1]: ln for ln in lines[1:4]}
    assert rows["t1"].split()[2:6] == ["litellm/t1", "acme", "namespace=team-a,",
                                       "path_prefix=gw"], rows  # where t1 lives, not acme now
    assert rows["plain"].split()[2:5] == ["litellm/plain", "-", "default"]
    assert rows["t2"].split()[2:5] == ["litellm/t2", "acme", "namespace=team-b"]
    assert re.search(r"#\d+ write litellm/t2 at namespace=team-b \(attempts: 1", out), out
    vault.seal(False)


# --- refusals ----------------------------------------------------------------------

def test_bad_team_settings_are_refused(tmp_path, vault):
    h = make_host(tmp_path, vault)
    p = h.run("team", "add", "x", "--region", "eu", check=EXIT_USAGE)
    assert "--region" in p.stderr
    p = h.run("team", "add", "x", "--namespace", "../up", check=EXIT_USAGE)
    assert "namespace '../up' is not valid" in p.stderr
    p = h.run("team", "add", "x", "--mount", "a;b=c", check=EXIT_USAGE)
    assert "mount 'a;b=c' is not valid" in p.stderr
    p = h.run("team", "add", "bad/id", check=EXIT_USAGE)
    assert "team id 'bad/id' is not valid" in p.stderr
    h.run("team", "add", "x", "--namespace", "ok", check=EXIT_OK)
    assert "already exists" in h.run("team", "add", "x", check=EXIT_FAIL).stderr
    assert "no team 'y'" in h.run("team", "update", "y", check=EXIT_FAIL).stderr
    p = h.run("key", "generate", "--team", "nobody", check=EXIT_FAIL)
    assert "no team 'nobody'" in p.stderr
    assert key_locations(tmp_path) == []


def test_remove_is_refused_while_the_team_has_keys(tmp_path, vault):
    make_namespaces(vault, "team-a")
    h = make_host(tmp_path, vault)
    h.run("team", "add", "acme", "--alias", "Acme Inc", "--namespace", "team-a", check=EXIT_OK)
    h.run("key", "generate", "--alias", "r1", "--team", "acme", check=EXIT_OK)
    lst = h.run("team", "list", check=EXIT_OK).stdout
    assert "acme" in lst and "namespace=team-a" in lst
    p = h.run("team", "remove", "acme", check=EXIT_FAIL)
    assert "still has 1 virtual key(s)" in p.stderr
    h.run("key", "delete", "--alias", "r1", check=EXIT_OK)
    h.run("team", "remove", "acme", check=EXIT_OK)
    assert "acme" not in h.run("team", "list", check=EXIT_OK).stdout
    assert "no team 'acme'" in h.run("team", "remove", "acme", check=EXIT_FAIL).stderr


def test_plugin_without_location_options_is_refused_before_commit(tmp_path):
    """A plugin built against ABI 1.0 (tests/abi's v10.so: write and delete,
    no per-call options) cannot put a key in a team's location: the key
    change is refused before anything is committed -- the loader would
    refuse every delivery, and the key must never land in the default place.
    A team without settings still works with it."""
    abi_plugins = H.BUILD / "tests" / "abi" / "plugins"
    if not (abi_plugins / "v10.so").exists():
        pytest.fail(f"{abi_plugins}/v10.so is not built", pytrace=False)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(kms="v10"))
    h = Host(cfg, plugin_dir=abi_plugins)
    h.run("team", "add", "acme", "--namespace", "team-a", check=EXIT_OK)
    h.run("team", "add", "plain", check=EXIT_OK)
    p = h.run("key", "generate", "--alias", "e1", "--team", "acme", check=EXIT_CONFIG)
    assert "plugin 'v10'" in p.stderr and "ABI 1.1" in p.stderr
    assert key_locations(tmp_path) == [] and outbox_locations(tmp_path) == []
    h.run("key", "generate", "--alias", "e2", "--team", "plain", check=EXIT_OK)
    assert key_locations(tmp_path) == [("e2", "plain", "")]


# --- kms-host serve: LiteLLM's /team/* and /key/generate {"team_id"} ---------------

def test_serve_team_endpoints_and_team_key_in_namespace(tmp_path, vault):
    import sys
    sys.path.insert(0, str(H.SRC / "tests" / "host_serve"))
    from serve_helpers import Serve, write_config  # noqa: E402
    make_namespaces(vault, "team-a", "team-b")
    s = Serve(write_config(tmp_path), vault.plugin_env())
    try:
        st, t = s.call("POST", "/team/new", {"team_alias": "Acme", "models": ["gpt-4o"],
                                              "metadata": {"secret_manager_settings":
                                                           {"namespace": "team-a"}}})
        assert st == 200, t
        tid = t["team_id"]
        assert t["team_alias"] == "Acme" and len(tid) == 36
        assert t["metadata"]["secret_manager_settings"] == {"namespace": "team-a"}
        st, e = s.call("POST", "/team/new", {"team_id": "x", "secret_manager_settings":
                                             {"namespace": "n", "region": "eu"}})
        assert st == 400 and "unknown key 'region'" in e["error"]["message"], e
        assert e["error"]["param"] == "secret_manager_settings"

        st, k = s.call("POST", "/key/generate", {"team_id": tid, "key_alias": "sv1"})
        assert st == 200, k
        assert k["team_id"] == tid and k["kms_host"]["secret_manager"] == "landed"
        assert k["kms_host"]["location"] == "namespace=team-a"
        assert read_at(vault, "litellm/sv1", ns="team-a") == k["key"]
        # A team the host does not know has no settings: default place, not enforced.
        st, k0 = s.call("POST", "/key/generate", {"team_id": "nobody", "key_alias": "sv0"})
        assert st == 200 and "team_id" in k0["kms_host"]["not_enforced"], k0
        assert "location" not in k0["kms_host"] and vault.read("litellm/sv0") == k0["key"]
        # /key/info and /key/list: team_id where LiteLLM has it, the location under kms_host
        st, i = s.call("GET", f"/key/info?key={k['key']}")
        assert st == 200 and i["info"]["team_id"] == tid, i
        assert i["info"]["kms_host"]["location"] == "namespace=team-a"
        st, i0 = s.call("GET", f"/key/info?key={k0['key']}")
        assert i0["info"]["team_id"] is None and i0["info"]["kms_host"]["location"] == "default"
        st, lst = s.call("GET", "/key/list?return_full_object=true")
        assert st == 200 and {(x["key_alias"], x["team_id"], x["kms_host"]["location"])
                              for x in lst["keys"]} == {("sv1", tid, "namespace=team-a"),
                                                        ("sv0", None, "default")}, lst
        st, lst = s.call("GET", f"/key/list?team_id={tid}")  # LiteLLM's team filter
        assert st == 200 and lst["keys"] == [k["token_id"]] and lst["total_count"] == 1, lst

        st, u = s.call("POST", "/team/update", {"team_id": tid, "secret_manager_settings":
                                                {"namespace": "team-b"}})
        assert st == 200 and u["metadata"]["secret_manager_settings"] == {"namespace": "team-b"}
        assert u["team_alias"] == "Acme"  # kept: not in the update
        st, info = s.call("GET", f"/team/info?team_id={tid}")
        assert st == 200 and [x["secret_name"] for x in info["keys"]] == ["litellm/sv1"], info
        st, e = s.call("POST", "/team/delete", {"team_ids": [tid]})
        assert st == 400 and "still has 1" in e["error"]["message"], e

        st, d = s.call("POST", "/key/delete", {"keys": [k["key"]]})
        assert st == 200 and d["kms_host"]["secret_manager"] == "landed", d
        assert read_at(vault, "litellm/sv1", ns="team-a") is None
        st, d = s.call("POST", "/team/delete", {"team_ids": [tid]})
        assert st == 200 and d["deleted_teams"] == [tid]
        assert s.call("GET", "/team/list") == (200, [])
    finally:
        assert s.stop() == 0
        assert "Sanitizer" not in s.stderr()  # the ASan/TSan builds run this file too


def test_serve_unknown_team_with_key_generation_settings_is_refused(tmp_path, vault):
    """LiteLLM's generate_key_fn looks the team up and, when it is not in its
    database, refuses the key with 400 "Unable to find team object in
    database. Team ID: T" if litellm_settings.key_generation_settings is
    set (else it accepts the key without the team's settings). serve does
    the same: nothing is stored for the refused request."""
    import sys
    sys.path.insert(0, str(H.SRC / "tests" / "host_serve"))
    from serve_helpers import CONFIG, MASTER, Serve, write_config  # noqa: E402
    text = CONFIG.format(master=MASTER) + ("litellm_settings:\n  key_generation_settings:\n"
                                           "    team_key_generation:\n"
                                           "      allowed_team_member_roles: [admin]\n")
    s = Serve(write_config(tmp_path, text=text), vault.plugin_env())
    try:
        st, e = s.call("POST", "/key/generate", {"team_id": "nobody", "key_alias": "u1"})
        assert st == 400, e
        assert e["error"]["message"] == ("Unable to find team object in database. "
                                         "Team ID: nobody")
        assert e["error"]["param"] == "team_id" and e["error"]["code"] == "400"
        assert key_locations(tmp_path) == [] and vault.read("litellm/u1") is None
        st, t = s.call("POST", "/team/new", {"team_id": "known"})
        assert st == 200, t
        st, k = s.call("POST", "/key/generate", {"team_id": "known", "key_alias": "u2"})
        assert st == 200 and k["kms_host"]["secret_manager"] == "landed", k
        assert "team_id" not in k["kms_host"]["not_enforced"]
    finally:
        assert s.stop() == 0


# --- migration: a schema-1 store (kms-host before teams) -----------------------------

V1_SQLITE = """
CREATE TABLE virtual_keys(key_id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE,
  alias TEXT UNIQUE, secret_name TEXT,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),
  updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')));
CREATE TABLE outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT,
  op TEXT NOT NULL CHECK(op IN ('write','delete')), secret_name TEXT NOT NULL, value BLOB,
  attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')));
"""
V1_PG = """
CREATE TABLE kms_host_schema(id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL);
INSERT INTO kms_host_schema VALUES (1, 1);
CREATE TABLE kms_host_virtual_keys(key_id text PRIMARY KEY, token_hash text NOT NULL UNIQUE,
  alias text UNIQUE, secret_name text, created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE kms_host_outbox(seq bigserial PRIMARY KEY,
  op text NOT NULL CHECK(op IN ('write','delete')), secret_name text NOT NULL, value bytea,
  attempts integer NOT NULL DEFAULT 0, last_error text, claimed_by text,
  claimed_until timestamptz, created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX kms_host_outbox_name ON kms_host_outbox(secret_name, seq);
"""
V1_ROWS = """
INSERT INTO {p}virtual_keys(key_id, token_hash, alias, secret_name)
  VALUES ('00112233aabbccdd', '{h}', 'legacy', 'litellm/legacy');
INSERT INTO {p}outbox(op, secret_name, value) VALUES ('write', 'litellm/legacy', {v});
"""


def test_schema_1_store_migrates_to_the_default_location(tmp_path, vault):
    """A store written before teams: its key and its queued write get the
    default location, the write is delivered there, and the key can then be
    deleted from there."""
    import hashlib
    legacy = "sk-legacyLEGACYlegacyLEGACY01"
    h = hashlib.sha256(legacy.encode()).hexdigest()
    if H.STORE == "postgresql":
        H.PG["server"].psql(V1_PG + V1_ROWS.format(p="kms_host_", h=h,
                                                   v=f"convert_to('{legacy}', 'UTF8')"),
                            db=H.PG["db"])
    else:
        db = tmp_path / "kms-host.db"
        con = sqlite3.connect(db)
        con.executescript(V1_SQLITE + V1_ROWS.format(p="", h=h, v=f"CAST('{legacy}' AS BLOB)")
                          + "PRAGMA user_version=1;")
        con.close()
        db.chmod(0o600)
    host = make_host(tmp_path, vault)
    assert "delivered: 1" in host.run("sync", check=EXIT_OK).stdout
    assert key_locations(tmp_path) == [("legacy", None, "")]
    assert read_at(vault, "litellm/legacy") == legacy
    host.run("key", "delete", "--alias", "legacy", check=EXIT_OK)
    assert read_at(vault, "litellm/legacy") is None
    assert host.run("team", "list", check=EXIT_OK).stdout.startswith("TEAM_ID")
