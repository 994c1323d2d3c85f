"""kms-host on PostgreSQL (issue 17), against a real server
(tests/support/pg_fixture.py): which settings select it, the versioned
schema (concurrent first starts, a newer schema refused), the delivery lock
as an advisory lock, connection handling (libpq parameters from the URL,
statement timeout, the password never shown), and many kms-host processes
changing keys on one database with Vault faults on and PostgreSQL restarted
mid-run, after which Vault equals the key table.

Runs on the postgresql pass only (ctest host_e2e_pg); the rest of tests/host
runs there too, on a fresh database per test (conftest.py)."""

import concurrent.futures
import hashlib
import os
import subprocess
import textwrap
import threading
import time

import pytest

from kms_host_helpers import (BUILD, EXIT_CONFIG, EXIT_FAIL, EXIT_OK, EXIT_QUEUED, HOST, PG,
                              PLUGIN_DIR, Host, base_env, key_rows, outbox_rows, parse_fields)

pytestmark = pytest.mark.postgresql_only


def write(tmp_path, text):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(textwrap.dedent(text))
    return cfg


def env_without_url(**extra):
    e = base_env(**extra)
    e.pop("DATABASE_URL", None)
    return e


def schema_version(db=None):
    return int(PG["server"].psql("SELECT version FROM kms_host_schema", db=db or PG["db"])[0][0])


# --- selection -----------------------------------------------------------------------

def test_database_url_reference_selects_postgresql(tmp_path, pg_server):
    url = os.environ["DATABASE_URL"]
    cfg = write(tmp_path, "general_settings:\n  database_url: os.environ/MY_PG_URL\n")
    h = Host(cfg, env=env_without_url(MY_PG_URL=url))
    g = parse_fields(h.run("key", "generate", "--alias", "a", check=EXIT_OK).stdout)
    assert [r[0] for r in key_rows(tmp_path / "kms-host.db")] == [g["key_id"]]
    assert not (tmp_path / "kms-host.db").exists()
    # an unset reference is a config error naming it, not a silent SQLite
    p = Host(cfg, env=env_without_url()).run("key", "list", check=EXIT_CONFIG)
    assert "general_settings.database_url: os.environ/MY_PG_URL" in p.stderr
    assert "MY_PG_URL" in p.stderr and not (tmp_path / "kms-host.db").exists()


def test_kms_db_path_and_db_option_come_before_database_url(tmp_path, pg_server):
    url = os.environ["DATABASE_URL"]
    cfg = write(tmp_path, f"general_settings:\n  database_url: {url}\n  kms_db_path: keys.db\n")
    Host(cfg).run("key", "generate", check=EXIT_OK)
    assert len(key_rows(tmp_path / "keys.db")) == 1
    assert pg_server.psql("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'kms_host%'",
                          db=PG["db"]) == [["0"]]  # not even migrated
    # --db takes a URL too
    cfg2 = write(tmp_path, "general_settings: {}\n")
    Host(cfg2, env=env_without_url()).run("--db", url, "key", "generate", check=EXIT_OK)
    assert len(key_rows(tmp_path / "kms-host.db")) == 1


def test_unused_sqlite_file_is_named(tmp_path, pg_server):
    """A kms-host.db beside the config is not silently forgotten when
    DATABASE_URL starts selecting PostgreSQL."""
    cfg = write(tmp_path, "general_settings: {}\n")
    Host(cfg, env=env_without_url()).run("key", "generate", check=EXIT_OK)  # SQLite
    p = Host(cfg).run("key", "list", check=EXIT_OK)  # DATABASE_URL: PostgreSQL
    assert f"{tmp_path / 'kms-host.db'} is not used: DATABASE_URL selects PostgreSQL" in p.stderr
    assert key_rows(tmp_path / "kms-host.db") == []  # the test's PostgreSQL database


# --- schema ---------------------------------------------------------------------------

def test_concurrent_first_starts_migrate_once(tmp_path, pg_server):
    cfg = write(tmp_path, "general_settings: {}\n")
    procs = [subprocess.Popen([str(HOST), "--config", str(cfg), "key", "generate"],
                              env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(8)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, outs
    assert schema_version() == 2  # HOST_SCHEMA_VERSION
    assert len(key_rows(tmp_path / "kms-host.db")) == 8


def test_newer_schema_is_refused_and_left_alone(tmp_path, pg_server):
    h = Host(write(tmp_path, "general_settings: {}\n"))
    h.run("key", "generate", check=EXIT_OK)
    pg_server.psql("UPDATE kms_host_schema SET version = 99", db=PG["db"])
    for args in (["key", "list"], ["key", "generate"], ["sync"]):
        p = h.run(*args, check=EXIT_CONFIG)
        assert "schema version 99, newer than this kms-host understands (2)" in p.stderr
    assert schema_version() == 99


# --- the delivery lock is the database's ------------------------------------------------

def test_delivery_lock_is_an_advisory_lock(tmp_path, pg_server):
    h = Host(write(tmp_path, "general_settings: {}\n"))
    h.run("key", "generate", "--alias", "a", check=EXIT_OK)
    holder = subprocess.Popen(["psql", "-X", "-q", "-At", "-h", "127.0.0.1", "-p", str(pg_server.port),
                               "-U", pg_server.superuser, "-d", PG["db"]],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PGPASSWORD=pg_server.password,
                                       PGAPPNAME="lock-holder"))
    try:
        holder.stdin.write("SELECT pg_advisory_lock(1802335080, 1);\nSELECT 'held';\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == ""  # pg_advisory_lock's empty value
        assert holder.stdout.readline().strip() == "held"
        h.run("key", "list", timeout=30, check=EXIT_OK)  # read-only: never waits
        p = h.run("--lock-timeout", "0", "key", "generate", check=EXIT_FAIL)
        assert "delivery lock" in p.stderr and "'lock-holder'" in p.stderr, p.stderr
        assert PG["server"].password not in p.stderr
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    h.run("--lock-timeout", "0", "key", "generate", check=EXIT_OK)


# --- connection handling ------------------------------------------------------------------

def test_password_never_shown(tmp_path, pg_server):
    pw = pg_server.password
    cfg = write(tmp_path, "general_settings: {}\n")
    outs = []
    for args in (["-v", "key", "generate", "--alias", "p"], ["-v", "key", "list"], ["-v", "sync"]):
        p = Host(cfg).run(*args, check=EXIT_OK)
        outs.append(p.stdout + p.stderr)
    # a wrong password, a refused connection: errors name host:port/db, never the URL
    bad = pg_server.url(PG["db"]).replace(pw, pw[:-1] + "X")
    p = Host(cfg, env=base_env(DATABASE_URL=bad)).run("key", "list", check=EXIT_FAIL)
    assert f"127.0.0.1:{pg_server.port}/{PG['db']}" in p.stderr and "password" in p.stderr
    outs.append(p.stdout + p.stderr)
    for out in outs:
        assert pw not in out and pw[:-1] not in out


def test_password_from_pgpassword_and_pgpass(tmp_path, pg_server):
    url = pg_server.url(PG["db"], password=False)
    cfg = write(tmp_path, "general_settings: {}\n")
    Host(cfg, env=base_env(DATABASE_URL=url, PGPASSWORD=pg_server.password)).run(
        "key", "generate", check=EXIT_OK)
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{pg_server.port}:*:{pg_server.superuser}:{pg_server.password}\n")
    pgpass.chmod(0o600)
    Host(cfg, env=base_env(DATABASE_URL=url, PGPASSFILE=pgpass)).run("key", "generate",
                                                                      check=EXIT_OK)
    assert len(key_rows(tmp_path / "kms-host.db")) == 2


def test_url_parameters_reach_libpq(tmp_path, pg_server):
    cfg = write(tmp_path, "general_settings: {}\n")
    # sslmode=require against a server without TLS: refused by libpq, not ignored
    url = os.environ["DATABASE_URL"] + "?sslmode=require"
    p = Host(cfg, env=base_env(DATABASE_URL=url)).run("key", "list", check=EXIT_FAIL)
    assert "SSL" in p.stderr, p.stderr
    # a statement timeout from the URL: a table locked by another session
    # makes a key change fail after it, instead of hanging
    Host(cfg).run("key", "generate", check=EXIT_OK)  # the schema exists
    locker = subprocess.Popen(["psql", "-X", "-q", "-At", "-h", "127.0.0.1", "-p", str(pg_server.port),
                               "-U", pg_server.superuser, "-d", PG["db"]],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PGPASSWORD=pg_server.password))
    try:
        locker.stdin.write("BEGIN;\nLOCK TABLE kms_host_virtual_keys;\nSELECT 'locked';\n")
        locker.stdin.flush()
        assert locker.stdout.readline().strip() == "locked"
        url = os.environ["DATABASE_URL"] + "?options=-c%20statement_timeout%3D300"
        p = Host(cfg, env=base_env(DATABASE_URL=url)).run("key", "generate", timeout=60,
                                                          check=EXIT_FAIL)
        assert "statement timeout" in p.stderr, p.stderr
    finally:
        locker.stdin.close()
        locker.wait(timeout=30)


def test_reconnects_after_a_restart_during_delivery(tmp_path, pg_server, vault):
    """The connection dies while the plugin call is in flight; the next
    statement reconnects and delivery finishes."""
    h = vault_host(tmp_path, vault, VAULT_CLIENT_TIMEOUT=30)
    vault.seal()
    h.run("key", "generate", "--alias", "slow", check=EXIT_QUEUED)
    vault.seal(False)
    vault.request("POST", "/__test__/faults", {"method": "POST", "delay_ms": 2500, "times": 1,
                                               "path": "^/v1/secret/data/litellm/slow$"})
    vault.request("DELETE", "/__test__/requests")
    proc = subprocess.Popen([str(HOST), "--config", str(h.config), "--plugin-dir",
                             str(PLUGIN_DIR), "sync"], env=h.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_request(vault, "litellm/slow")
    pg_server.restart()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_OK, err
    assert "reconnected to PostgreSQL" in err
    assert_vault_equals_table(tmp_path, vault)


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "x", "86401", ""])
def test_bad_outbox_lease(tmp_path, pg_server, value):
    p = Host(write(tmp_path, "general_settings: {}\n")).run(
        "key", "list", extra_env={"KMS_HOST_OUTBOX_LEASE": value}, check=EXIT_CONFIG)
    assert "KMS_HOST_OUTBOX_LEASE: expected whole seconds from 1 to 86400" in p.stderr


# --- the outbox's claims between replicas ----------------------------------------------

def test_outbox_claims_between_connections(pg_server):
    """tests/host/test_host_pg_claims.c: per-name order, skip-locked claims,
    takeover of a dead connection's claim and of an ended lease."""
    exe = BUILD / "tests" / "host" / "test_host_pg_claims"
    assert exe.exists(), f"{exe} is not built"
    p = subprocess.run([str(exe)], env=base_env(KMS_TEST_PG_URL=os.environ["DATABASE_URL"]),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


# --- many processes, one database, Vault faults, PostgreSQL restarted ----------------

VAULT_CONFIG = """\
general_settings:
  key_management_system: hashicorp_vault
  key_management_settings:
    store_virtual_keys: true
    access_mode: read_and_write
"""


def vault_host(tmp_path, vault, **env):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(VAULT_CONFIG)
    return Host(cfg, env=vault.plugin_env(**env))


def wait_for_request(vault, fragment, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        _, log = vault.request("GET", "/__test__/requests")
        if any(fragment in r.get("path", "") for r in log["requests"]):
            return
        time.sleep(0.05)
    raise AssertionError(f"no request for {fragment} reached Vault")


def assert_vault_equals_table(tmp_path, vault):
    keys = key_rows(tmp_path / "kms-host.db")
    assert outbox_rows(tmp_path / "kms-host.db") == []
    names = sorted(k[3] for k in keys if k[3])
    assert vault.live_names() == names
    for _, token_hash, _, name in keys:
        assert hashlib.sha256(vault.read(name).encode()).hexdigest() == token_hash


def churn(h, worker, rounds):
    """generate / regenerate / delete aliases of this worker; the statuses seen."""
    seen = []
    for i in range(rounds):
        alias = f"w{worker}/k{i % 3}"
        for args in (["key", "generate", "--alias", alias],
                     ["key", "regenerate", "--alias", alias],
                     ["key", "delete", "--alias", alias] if i % 2 else ["key", "list"]):
            p = h.run(*args, extra_env={"KMS_HOST_LOCK_TIMEOUT": 60}, timeout=120)
            seen.append(p.returncode)
            assert p.returncode in (EXIT_OK, EXIT_FAIL, EXIT_QUEUED), (args, p.stderr)
            assert "Traceback" not in p.stderr and "sanitizer" not in p.stderr.lower()
    return seen


def flap_vault(vault, stop):
    """Vault faults until `stop`: sealed spells, 503s and slow answers."""
    while not stop.is_set():
        vault.request("POST", "/__test__/faults", {"method": "POST", "status": 503, "times": 3,
                                                   "path": "^/v1/secret/data/litellm/"})
        vault.request("POST", "/__test__/faults", {"delay_ms": 300, "times": 2,
                                                   "path": "^/v1/secret/"})
        vault.seal()
        stop.wait(0.2)
        vault.seal(False)
        stop.wait(0.4)


def test_processes_on_one_database_with_faults_and_a_restart(tmp_path, pg_server, vault):
    h = vault_host(tmp_path, vault)
    stop = threading.Event()
    flapper = threading.Thread(target=flap_vault, args=(vault, stop))
    flapper.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            jobs = [pool.submit(churn, h, w, 6) for w in range(4)]
            time.sleep(3)
            pg_server.restart()  # mid-run: commands in flight fail or reconnect
            statuses = [s for j in jobs for s in j.result(timeout=600)]
    finally:
        stop.set()
        flapper.join()
    vault.seal(False)
    vault.request("DELETE", "/__test__/faults")
    assert statuses.count(EXIT_OK) > 0 and statuses.count(EXIT_QUEUED) > 0, statuses
    h.run("sync", check=EXIT_OK)
    assert_vault_equals_table(tmp_path, vault)
