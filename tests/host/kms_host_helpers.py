"""Shared helpers for the kms-host end-to-end suites (imported by the test
modules; conftest.py only adds fixtures).

They drive the real kms-host binary (KMS_BINARY_DIR/host_stub/kms-host) with
plugins from KMS_PLUGIN_DIR, as CTest sets them; run by hand they default to
build/. Standard library + pytest only (Debian's python3-pytest)."""

import os
import pathlib
import sqlite3
import subprocess
import sys

import pytest

SRC = pathlib.Path(os.environ.get("KMS_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BUILD = pathlib.Path(os.environ.get("KMS_BINARY_DIR", SRC / "build"))
PLUGIN_DIR = pathlib.Path(os.environ.get("KMS_PLUGIN_DIR", BUILD / "plugins"))
HOST = BUILD / "host_stub" / "kms-host"

# Exit statuses (host_stub/host.h, README.md).
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_CONFIG, EXIT_QUEUED = 0, 1, 2, 3, 4
EXIT_TEST_CRASH = 99  # KMS_HOST_CRASH_AFTER_COMMIT=1


# --- the store under test ---------------------------------------------------------
#
# KMS_TEST_STORE=sqlite (default) or postgresql runs the same suites against
# either store: on postgresql, conftest.py starts one server per session
# (tests/support/pg_fixture.py) and gives every test a fresh database through
# DATABASE_URL, which kms-host uses wherever a test does not name a SQLite
# file (--db / kms_db_path). Tests about the SQLite file itself are marked
# sqlite_only, PostgreSQL-only ones postgresql_only; the other pass deselects
# them (they run in the ctest entry of their store, never skipped green).

STORE = os.environ.get("KMS_TEST_STORE", "sqlite")
if STORE not in ("sqlite", "postgresql"):
    raise RuntimeError(f"KMS_TEST_STORE={STORE!r}: expected sqlite or postgresql")

sys.path.insert(0, str(SRC / "tests" / "support"))  # pg_fixture, for conftest.py

PG = {"server": None, "db": None}  # the session's server, the current test's database


def _pg_rows(sql):
    rows = PG["server"].psql(sql, db=PG["db"])
    return [tuple(None if c == "<NULL>" else c for c in r) for r in rows]


def key_rows(db_file):
    """(key_id, token_hash, alias, secret_name) of every key, oldest first.
    `db_file` is the SQLite file the test expects; the default one
    (kms-host.db beside the config) is the test's PostgreSQL database on
    the postgresql pass."""
    sql = "SELECT key_id, token_hash, alias, secret_name FROM {}virtual_keys " \
          "ORDER BY created_at, key_id"
    if STORE == "postgresql" and pathlib.Path(db_file).name == "kms-host.db":
        return _pg_rows(sql.format("kms_host_"))
    con = sqlite3.connect(db_file)
    try:
        return con.execute(sql.format("")).fetchall()
    finally:
        con.close()


def outbox_rows(db_file):
    """(op, secret_name) of every queued operation, in order (as key_rows)."""
    sql = "SELECT op, secret_name FROM {}outbox ORDER BY seq"
    if STORE == "postgresql" and pathlib.Path(db_file).name == "kms-host.db":
        return _pg_rows(sql.format("kms_host_"))
    con = sqlite3.connect(db_file)
    try:
        return con.execute(sql.format("")).fetchall()
    finally:
        con.close()


def base_env(**extra):
    """A clean environment: no KMS_*/VAULT_*/HCP_* leaking from the caller,
    sanitizer options kept."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KMS_", "VAULT_", "HCP_", "BAO_"))}
    # GCC <= 13's sanitizer runtime can misread a dynamic-TLS block of a
    # dlopen'ed plugin (the Vault plugin has a __thread variable) as a
    # pre-2.25 glibc header, and LeakSanitizer's tracer then segfaults at exit
    # ("Tracer caught signal 11"), by chance of malloc addresses. Turning the
    # __tls_get_addr interceptor off avoids it without weakening leak checks.
    asan = env.get("ASAN_OPTIONS", "detect_leaks=1")
    if "intercept_tls_get_addr" not in asan:
        asan += ":intercept_tls_get_addr=0"
    env["ASAN_OPTIONS"] = asan
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Host:
    """Runs kms-host with one config."""

    def __init__(self, config, env=None, plugin_dir=PLUGIN_DIR):
        self.config = pathlib.Path(config)
        self.env = env if env is not None else base_env()
        self.plugin_dir = plugin_dir

    def run(self, *args, input=None, env=None, extra_env=None, timeout=120, check=None):
        cmd = [str(HOST), "--config", str(self.config)]
        if self.plugin_dir is not None:
            cmd += ["--plugin-dir", str(self.plugin_dir)]
        e = dict(env if env is not None else self.env)
        if extra_env:
            e.update({k: str(v) for k, v in extra_env.items()})
        p = subprocess.run(cmd + list(args), input=input, env=e, capture_output=True,
                           text=True, timeout=timeout)
        if check is not None:
            assert p.returncode == check, (
                f"{args}: exit {p.returncode}, wanted {check}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p


def run_raw(*args, env=None, input=None):
    return subprocess.run([str(HOST)] + list(args), env=env or base_env(), input=input,
                          capture_output=True, text=True, timeout=60)


def parse_fields(text):
    """`key: value` lines -> dict (first occurrence wins)."""
    out = {}
    for line in text.splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            out.setdefault(k.strip(), v.strip())
    return out


def require_binary():
    if not HOST.exists():
        pytest.fail(f"{HOST} is not built (cmake --build build)")
    if not (PLUGIN_DIR / "env.so").exists():
        pytest.fail(f"{PLUGIN_DIR}/env.so is not built")


# --- tests/vault_server ------------------------------------------------------------

import json
import ssl
import sys
import urllib.error
import urllib.request

sys.path.insert(0, str(SRC / "tests"))
from testserver.launcher import ServerProcess  # noqa: E402

VAULT_SERVER = SRC / "tests" / "vault_server" / "server.py"
MAKE_CERTS = SRC / "tests" / "vault_server" / "make_certs.sh"
VAULT_PLUGIN = PLUGIN_DIR / "hashicorp_vault.so"


class VaultServer:
    """tests/vault_server/server.py with TLS and test controls on loopback.
    stop() + start() reuses the port (state is in memory and starts empty).
    Started by testserver.launcher, the one launcher of the test servers."""

    def __init__(self, workdir, certs, port=0):
        self.workdir = pathlib.Path(workdir)
        self.certs = pathlib.Path(certs)
        self.ctx = ssl.create_default_context(cafile=str(self.certs / "ca.pem"))
        self._proc = ServerProcess(VAULT_SERVER, [
            "--tls-cert", self.certs / "server.pem", "--tls-key", self.certs / "server.key",
            "--test-controls"], self.workdir, port=port, log_name="vault-server.log")

    @property
    def url(self):
        return self._proc.url

    @property
    def port(self):
        return self._proc.port

    def start(self):
        self._proc.start()
        return self

    def stop(self):
        self._proc.stop()

    def request(self, method, path, body=None, token="root"):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            req.add_header("X-Vault-Token", token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw) if raw else None
            except ValueError:
                return e.code, None

    def seal(self, sealed=True):
        assert self.request("POST", "/__test__/seal", {"sealed": sealed})[0] == 200

    def read(self, name):
        """The value at secret/data/<name>, or None when absent/deleted."""
        st, body = self.request("GET", f"/v1/secret/data/{name}")
        if st == 404:
            return None
        assert st == 200, (st, body)
        return body["data"]["data"]["key"]

    def write(self, name, value):
        st, body = self.request("POST", f"/v1/secret/data/{name}", {"data": {"key": value}})
        assert st in (200, 204), (st, body)

    def live_names(self, folder="litellm/"):
        """Every secret under folder whose current version is readable."""
        out = []
        st, body = self.request("GET", f"/v1/secret/metadata/{folder}?list=true")
        if st == 404:
            return out
        assert st == 200, (st, body)
        for k in body["data"]["keys"]:
            if k.endswith("/"):
                out += self.live_names(folder + k)
            elif self.read(folder + k) is not None:
                out.append(folder + k)
        return sorted(out)

    def plugin_env(self, **extra):
        return base_env(HCP_VAULT_ADDR=self.url, HCP_VAULT_TOKEN="root",
                        VAULT_CACERT=self.certs / "ca.pem", VAULT_MAX_RETRIES=0,
                        HCP_VAULT_REFRESH_INTERVAL=0, **extra)
