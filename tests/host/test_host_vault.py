"""kms-host end to end with the hashicorp_vault plugin against
tests/vault_server over TLS: secrets straight through, os.environ/ resolved
from Vault, the virtual-key hooks (with and without alias, regenerate,
prefix change), access modes, and the outbox failure matrix -- Vault down
(sealed or stopped) during generate/delete/regenerate, a crash between the
commit and the call (test hook and kill -9) -- after which `sync` makes
Vault equal the key table: no lost write, no duplicate, no orphan."""

import hashlib
import os
import signal
import subprocess
import time

import pytest

from kms_host_helpers import (EXIT_CONFIG, EXIT_FAIL, EXIT_OK, EXIT_QUEUED, EXIT_TEST_CRASH,
                              HOST, PLUGIN_DIR, VAULT_PLUGIN, VAULT_SERVER, Host, key_rows,
                              outbox_rows, parse_fields)

@pytest.fixture(scope="module", autouse=True)
def _need_vault_plugin_and_server():
    # A missing plugin or server fails the suite; it never skips it green.
    if not VAULT_PLUGIN.exists():
        pytest.fail(f"{VAULT_PLUGIN} is not built (cmake --build build)", pytrace=False)
    if not VAULT_SERVER.exists():
        pytest.fail(f"{VAULT_SERVER} is missing", pytrace=False)

PROVIDER_KEY = "sk-proj-provider-0123456789abcdefghij"

CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
  - model_name: local
    litellm_params:
      model: ollama/llama3
      api_base: os.environ/LOCAL_API_BASE
general_settings:
  key_management_system: hashicorp_vault
  key_management_settings:
"""


# certs, vault: conftest.py


def make_host(tmp_path, vault, settings=None, **env):
    if settings is None:
        settings = {"store_virtual_keys": "true", "access_mode": "read_and_write"}
    lines = "".join(f"    {k}: {v}\n" for k, v in settings.items())
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG + lines)
    return Host(cfg, env=vault.plugin_env(**env))


def rows(tmp_path):
    """The key table and the queue, of SQLite beside the config or the
    test's PostgreSQL database (kms_host_helpers.key_rows)."""
    db = tmp_path / "kms-host.db"
    return [tuple(r) for r in key_rows(db)], [tuple(r) for r in outbox_rows(db)]


def assert_vault_equals_table(tmp_path, vault):
    """The invariant: nothing queued; every stored key is in Vault with its
    current value; nothing else lives under litellm/."""
    keys, outbox = rows(tmp_path)
    assert outbox == []
    names = sorted(k[3] for k in keys if k[3])
    assert vault.live_names() == names
    for _, token_hash, _, name in keys:
        if name:
            assert hashlib.sha256(vault.read(name).encode()).hexdigest() == token_hash


# --- straight through ---------------------------------------------------------------

def test_plugins_lists_vault(tmp_path, vault):
    p = make_host(tmp_path, vault).run("plugins", check=EXIT_OK)
    line = next(l for l in p.stdout.splitlines() if "hashicorp_vault" in l)
    assert line.startswith("*") and "read,write,delete" in line and " 1.1 " in line and "list,notify" in line


def test_secret_roundtrip(tmp_path, vault):
    h = make_host(tmp_path, vault)
    h.run("secret", "put", "OPENAI_API_KEY", input=PROVIDER_KEY + "\n", check=EXIT_OK)
    assert vault.read("OPENAI_API_KEY") == PROVIDER_KEY  # exactly one newline stripped
    assert h.run("secret", "get", "OPENAI_API_KEY", check=EXIT_OK).stdout == PROVIDER_KEY + "\n"
    h.run("secret", "put", "TWO_NL", input="abc\n\n", check=EXIT_OK)
    assert vault.read("TWO_NL") == "abc\n"
    h.run("secret", "put", "NO_NL", input="abc", check=EXIT_OK)
    assert vault.read("NO_NL") == "abc"
    h.run("secret", "delete", "OPENAI_API_KEY", check=EXIT_OK)
    assert vault.read("OPENAI_API_KEY") is None
    h.run("secret", "delete", "OPENAI_API_KEY", check=EXIT_OK)  # already gone: still OK
    assert "NOT_FOUND" in h.run("secret", "get", "OPENAI_API_KEY", check=EXIT_FAIL).stderr


def test_resolve_from_vault(tmp_path, vault):
    vault.write("OPENAI_API_KEY", PROVIDER_KEY)
    h = make_host(tmp_path, vault, {"hosted_keys": "[OPENAI_API_KEY]"},
                  LOCAL_API_BASE="http://localhost:11434", OPENAI_API_KEY="WRONG-env-value")
    p = h.run("resolve", check=EXIT_OK)
    assert (f"os.environ/OPENAI_API_KEY -> sk-... ({len(PROVIDER_KEY)} chars) [hashicorp_vault]"
            in p.stdout)
    assert "os.environ/LOCAL_API_BASE -> htt... (22 chars) [environment]" in p.stdout
    assert PROVIDER_KEY not in p.stdout + p.stderr


def test_resolve_missing_in_vault_is_error(tmp_path, vault):
    h = make_host(tmp_path, vault, {}, LOCAL_API_BASE="x")
    h.config.write_text(h.config.read_text().replace(
        "general_settings:\n", "general_settings:\n  kms_env_fallback: \"off\"\n", 1))
    p = h.run("resolve", check=EXIT_FAIL)
    assert "OPENAI_API_KEY -> ERROR: via hashicorp_vault" in p.stdout and "NOT_FOUND" in p.stdout
    assert "LOCAL_API_BASE -> ERROR: via hashicorp_vault" in p.stdout


def test_resolve_vault_down_is_error(tmp_path, vault):
    vault.write("OPENAI_API_KEY", PROVIDER_KEY)
    vault.seal()
    h = make_host(tmp_path, vault, {"hosted_keys": "[OPENAI_API_KEY]"}, LOCAL_API_BASE="x")
    h.config.write_text(h.config.read_text().replace(
        "general_settings:\n", "general_settings:\n  kms_env_fallback: not_found\n", 1))
    p = h.run("resolve", check=EXIT_FAIL)  # UNAVAILABLE is not NOT_FOUND: no fallback
    assert "OPENAI_API_KEY -> ERROR: via hashicorp_vault" in p.stdout
    assert "UNAVAILABLE" in p.stdout


def test_access_modes(tmp_path, vault):
    vault.write("OPENAI_API_KEY", PROVIDER_KEY)
    ro = make_host(tmp_path, vault, {"access_mode": "read_only"})
    assert ro.run("secret", "get", "OPENAI_API_KEY", check=EXIT_OK).stdout.strip() == PROVIDER_KEY
    assert "PERMISSION_DENIED" in ro.run("secret", "put", "X", input="v", check=EXIT_FAIL).stderr
    assert "PERMISSION_DENIED" in ro.run("secret", "delete", "OPENAI_API_KEY",
                                         check=EXIT_FAIL).stderr
    assert vault.read("X") is None and vault.read("OPENAI_API_KEY") == PROVIDER_KEY
    wo = make_host(tmp_path, vault, {"access_mode": "write_only"},
                   OPENAI_API_KEY="from-the-environment", LOCAL_API_BASE="http://x")
    assert "PERMISSION_DENIED" in wo.run("secret", "get", "OPENAI_API_KEY",
                                         check=EXIT_FAIL).stderr
    wo.run("secret", "put", "X", input="v", check=EXIT_OK)
    assert vault.read("X") == "v"
    # LiteLLM: with write_only, os.environ/ references come from the environment
    assert wo.run("resolve", check=EXIT_OK).stdout.count("[environment]") == 2


def test_store_refused_when_read_only(tmp_path, vault):
    h = make_host(tmp_path, vault, {"store_virtual_keys": "true", "access_mode": "read_only"})
    assert "access_mode" in h.run("key", "generate", "--alias", "a", check=EXIT_CONFIG).stderr
    assert rows(tmp_path) == ([], [])


# --- virtual-key hooks ---------------------------------------------------------------

def test_generate_delete_with_alias(tmp_path, vault):
    h = make_host(tmp_path, vault)
    g = parse_fields(h.run("key", "generate", "--alias", "demo", check=EXIT_OK).stdout)
    assert g["secret_name"] == "litellm/demo"
    assert vault.read("litellm/demo") == g["key"]
    assert_vault_equals_table(tmp_path, vault)
    assert g["key"] not in h.run("key", "list", check=EXIT_OK).stdout
    h.run("key", "delete", "--alias", "demo", check=EXIT_OK)
    assert vault.read("litellm/demo") is None
    assert_vault_equals_table(tmp_path, vault)


def test_generate_delete_without_alias(tmp_path, vault):
    h = make_host(tmp_path, vault)
    g = parse_fields(h.run("key", "generate", check=EXIT_OK).stdout)
    assert g["secret_name"] == f"litellm/virtual-key-{g['key_id']}"
    assert vault.read(g["secret_name"]) == g["key"]
    h.run("key", "delete", "--key", g["key"], check=EXIT_OK)
    assert vault.read(g["secret_name"]) is None
    assert_vault_equals_table(tmp_path, vault)


def test_prefix_without_slash_and_regenerate(tmp_path, vault):
    h = make_host(tmp_path, vault, {"store_virtual_keys": "true", "access_mode": "read_and_write",
                                    "prefix_for_stored_virtual_keys": "litellm"})
    g = parse_fields(h.run("key", "generate", "--alias", "svc", check=EXIT_OK).stdout)
    assert g["secret_name"] == "litellm/svc"
    r = parse_fields(h.run("key", "regenerate", "--alias", "svc", check=EXIT_OK).stdout)
    assert r["key"] != g["key"] and r["secret_name"] == "litellm/svc"
    assert vault.read("litellm/svc") == r["key"]
    assert "removed_secret" not in r
    assert_vault_equals_table(tmp_path, vault)


def test_regenerate_after_prefix_change_moves_secret(tmp_path, vault):
    h = make_host(tmp_path, vault)
    g = parse_fields(h.run("key", "generate", "--alias", "mv", check=EXIT_OK).stdout)
    h2 = make_host(tmp_path, vault, {"store_virtual_keys": "true", "access_mode": "read_and_write",
                                     "prefix_for_stored_virtual_keys": "litellm/team-b/"})
    r = parse_fields(h2.run("key", "regenerate", "--key", g["key"], check=EXIT_OK).stdout)
    assert r["secret_name"] == "litellm/team-b/mv" and r["removed_secret"] == "litellm/mv"
    assert vault.read("litellm/mv") is None
    assert vault.read("litellm/team-b/mv") == r["key"]
    assert_vault_equals_table(tmp_path, vault)


def test_delete_mode_destroy_passed_through(tmp_path, vault):
    h = make_host(tmp_path, vault, {"store_virtual_keys": "true", "access_mode": "read_and_write",
                                    "delete_mode": "destroy"})
    h.run("key", "generate", "--alias", "gone", check=EXIT_OK)
    h.run("key", "delete", "--alias", "gone", check=EXIT_OK)
    assert vault.request("GET", "/v1/secret/metadata/litellm/gone")[0] == 404


# --- nothing lost: the outbox failure matrix ------------------------------------------

def test_generate_while_sealed_then_sync(tmp_path, vault):
    h = make_host(tmp_path, vault)
    vault.seal()
    p = h.run("key", "generate", "--alias", "down", check=EXIT_QUEUED)
    g = parse_fields(p.stdout)
    assert g["key"].startswith("sk-") and "still queued" in p.stderr and "sync" in p.stderr
    keys, outbox = rows(tmp_path)
    assert len(keys) == 1 and outbox == [("write", "litellm/down")]
    assert "queued secret-manager operations" in h.run("key", "list", check=EXIT_OK).stdout
    assert h.run("sync", check=EXIT_QUEUED).stdout.endswith("queued: 1\n")
    vault.seal(False)
    assert vault.read("litellm/down") is None
    assert "delivered: 1" in h.run("sync", check=EXIT_OK).stdout
    assert vault.read("litellm/down") == g["key"]
    assert_vault_equals_table(tmp_path, vault)
    h.run("sync", check=EXIT_OK)  # nothing left: a no-op


def test_later_command_delivers_queue(tmp_path, vault):
    h = make_host(tmp_path, vault)
    vault.seal()
    a = parse_fields(h.run("key", "generate", "--alias", "a", check=EXIT_QUEUED).stdout)
    b = parse_fields(h.run("key", "generate", "--alias", "b", check=EXIT_QUEUED).stdout)
    vault.seal(False)
    c = parse_fields(h.run("key", "generate", "--alias", "c", check=EXIT_OK).stdout)
    for x, n in ((a, "a"), (b, "b"), (c, "c")):
        assert vault.read(f"litellm/{n}") == x["key"]
    assert_vault_equals_table(tmp_path, vault)


def test_delete_while_sealed_then_sync(tmp_path, vault):
    h = make_host(tmp_path, vault)
    g = parse_fields(h.run("key", "generate", "--alias", "del", check=EXIT_OK).stdout)
    vault.seal()
    h.run("key", "delete", "--alias", "del", check=EXIT_QUEUED)
    keys, outbox = rows(tmp_path)
    assert keys == [] and outbox == [("delete", "litellm/del")]
    vault.seal(False)
    assert vault.read("litellm/del") == g["key"]  # still there until delivered
    h.run("sync", check=EXIT_OK)
    assert vault.read("litellm/del") is None
    assert_vault_equals_table(tmp_path, vault)


def test_regenerate_while_sealed_then_sync(tmp_path, vault):
    h = make_host(tmp_path, vault)
    g = parse_fields(h.run("key", "generate", "--alias", "rot", check=EXIT_OK).stdout)
    vault.seal()
    r = parse_fields(h.run("key", "regenerate", "--alias", "rot", check=EXIT_QUEUED).stdout)
    vault.seal(False)
    assert vault.read("litellm/rot") == g["key"]
    h.run("sync", check=EXIT_OK)
    assert vault.read("litellm/rot") == r["key"]
    assert_vault_equals_table(tmp_path, vault)


@pytest.mark.sqlite_only
def test_delivered_key_leaves_no_copy_on_disk(tmp_path, vault):
    """While queued the key is in the database (that is what the outbox is
    for); once delivered, no byte of it is left in the file or in the
    journal SQLite wrote and deleted (a hard link keeps that journal's inode
    for us to read)."""
    h = make_host(tmp_path, vault)
    vault.seal()
    g = parse_fields(h.run("key", "generate", "--alias", "rest", check=EXIT_QUEUED).stdout)
    db = tmp_path / "kms-host.db"
    key = g["key"].encode()
    assert key in db.read_bytes()
    journal, spy = tmp_path / "kms-host.db-journal", tmp_path / "journal-spy"
    journal.write_bytes(bytes(4096))  # not a hot journal: SQLite reuses the file
    journal.chmod(0o600)
    os.link(journal, spy)
    vault.seal(False)
    h.run("sync", check=EXIT_OK)
    assert vault.read("litellm/rest") == g["key"]
    assert not journal.exists() and spy.stat().st_size > 0  # SQLite wrote into it
    for f in (db, spy):
        data = f.read_bytes()
        assert key not in data and key[3:20] not in data, f
    assert_vault_equals_table(tmp_path, vault)


def test_generate_then_delete_while_down_leaves_no_orphan(tmp_path, vault):
    h = make_host(tmp_path, vault)
    vault.seal()
    g = parse_fields(h.run("key", "generate", check=EXIT_QUEUED).stdout)
    h.run("key", "delete", "--key", g["key"], check=EXIT_QUEUED)
    _, outbox = rows(tmp_path)
    assert outbox == [("delete", g["secret_name"])]  # the write was superseded
    vault.seal(False)
    h.run("sync", check=EXIT_OK)
    assert vault.read(g["secret_name"]) is None
    assert_vault_equals_table(tmp_path, vault)


def test_server_stopped_then_restarted(tmp_path, vault):
    h = make_host(tmp_path, vault)
    vault.stop()  # connection refused: nothing listening on the port
    g = parse_fields(h.run("key", "generate", "--alias", "restart", check=EXIT_QUEUED).stdout)
    vault.start()  # same port, same URL
    h.run("sync", check=EXIT_OK)
    assert vault.read("litellm/restart") == g["key"]
    assert_vault_equals_table(tmp_path, vault)


def test_mixed_matrix_converges(tmp_path, vault):
    h = make_host(tmp_path, vault)
    keep = parse_fields(h.run("key", "generate", "--alias", "keep", check=EXIT_OK).stdout)
    drop = parse_fields(h.run("key", "generate", "--alias", "drop", check=EXIT_OK).stdout)
    vault.seal()
    h.run("key", "regenerate", "--alias", "keep", check=EXIT_QUEUED)
    h.run("key", "delete", "--key", drop["key"], check=EXIT_QUEUED)
    new = parse_fields(h.run("key", "generate", check=EXIT_QUEUED).stdout)
    vault.seal(False)
    h.run("sync", check=EXIT_OK)
    assert vault.read("litellm/keep") != keep["key"]
    assert vault.read("litellm/drop") is None
    assert vault.read(new["secret_name"]) == new["key"]
    assert_vault_equals_table(tmp_path, vault)


@pytest.mark.parametrize("op", ["generate", "delete", "regenerate"])
def test_crash_after_commit_then_sync(tmp_path, vault, op):
    h = make_host(tmp_path, vault)
    if op != "generate":
        h.run("key", "generate", "--alias", "crash", check=EXIT_OK)
    args = ["key", op, "--alias", "crash"]
    p = h.run(*args, extra_env={"KMS_HOST_CRASH_AFTER_COMMIT": "1"}, check=EXIT_TEST_CRASH)
    keys, outbox = rows(tmp_path)
    assert outbox  # committed with the key change, not yet delivered
    if op == "delete":
        assert keys == []
    else:
        assert parse_fields(p.stdout)["key"].startswith("sk-")
    h.run("sync", check=EXIT_OK)
    assert_vault_equals_table(tmp_path, vault)


def test_kill_9_during_delivery_then_sync(tmp_path, vault):
    h = make_host(tmp_path, vault, VAULT_CLIENT_TIMEOUT=30)
    # Hold the write to litellm/slow for 3 s; kill -9 kms-host while it waits.
    st, _ = vault.request("POST", "/__test__/faults",
                          {"method": "POST", "path": "^/v1/secret/data/litellm/slow$",
                           "delay_ms": 3000, "times": 1})
    assert st == 200
    proc = subprocess.Popen([str(HOST), "--config", str(h.config), "--plugin-dir", str(PLUGIN_DIR),
                             "key", "generate", "--alias", "slow"], env=h.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        st, log = vault.request("GET", "/__test__/requests")
        if any("litellm/slow" in r.get("path", "") for r in log["requests"]):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    keys, outbox = rows(tmp_path)
    assert len(keys) == 1 and outbox == [("write", "litellm/slow")]
    time.sleep(3.2)  # the delayed write may still land server-side: replay must be harmless
    h.run("sync", check=EXIT_OK)
    assert_vault_equals_table(tmp_path, vault)


def test_concurrent_hosts_converge(tmp_path, vault):
    """Several kms-host processes at once (SQLite busy timeout + the delivery
    lock): every key lands exactly once, the table and Vault agree."""
    h = make_host(tmp_path, vault)
    h.run("key", "list", check=EXIT_OK)  # create the database first
    vault.seal()
    procs = [subprocess.Popen([str(HOST), "--config", str(h.config), "--plugin-dir",
                               str(PLUGIN_DIR), "key", "generate", "--alias", f"c{i}"],
                              env=h.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(6)]
    time.sleep(0.3)
    vault.seal(False)
    codes = [p.wait(60) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert set(codes) <= {EXIT_OK, EXIT_QUEUED}, codes
    h.run("sync", check=EXIT_OK)
    keys, _ = rows(tmp_path)
    assert sorted(k[2] for k in keys) == [f"c{i}" for i in range(6)]
    assert_vault_equals_table(tmp_path, vault)


def test_refresh(tmp_path, vault):
    assert "refreshed: hashicorp_vault" in make_host(tmp_path, vault).run("refresh",
                                                                         check=EXIT_OK).stdout
