"""kms-host hardening (issue 15), end to end with the `env` backend: the
database, its journal and directory must be private (refused, not warned
about); a database written by a newer kms-host is refused; core dumps and
ptrace are off unless --allow-debugging; read-only commands never take the
delivery lock and the others wait a bounded time and name its holder;
`secret get` does not drive a terminal; `--key -` reads the key from stdin;
`secret put`'s 1 MiB limit is the documented one."""

import fcntl
import os
import pathlib
import pty
import resource
import select
import shutil
import sqlite3
import subprocess
import tempfile
import textwrap
import time

import pytest

from kms_host_helpers import (EXIT_CONFIG, EXIT_FAIL, EXIT_OK, EXIT_USAGE, HOST, PLUGIN_DIR, Host,
                              base_env, parse_fields)

CONFIG = """\
    model_list:
      - model_name: m
        litellm_params: {api_key: os.environ/OPENAI_API_KEY}
    general_settings:
      key_management_system: env
      key_management_settings: {prefix: KMS_}
    """


@pytest.fixture
def host(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(textwrap.dedent(CONFIG))
    return Host(cfg, env=base_env(KMS_OPENAI_API_KEY="sk-provider-0123456789abcdef"))


# --- item 3: the database, its journal and its directory are private -------------------

@pytest.mark.sqlite_only
def test_database_readable_by_others_is_refused(host, tmp_path):
    host.run("key", "generate", check=EXIT_OK)
    db = tmp_path / "kms-host.db"
    for mode in (0o644, 0o660, 0o604):
        db.chmod(mode)
        p = host.run("key", "list", check=EXIT_CONFIG)
        assert str(db) in p.stderr and f"chmod 600 {db}" in p.stderr, p.stderr
        host.run("key", "generate", check=EXIT_CONFIG)
    db.chmod(0o600)
    host.run("key", "list", check=EXIT_OK)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("suffix", ["-journal", "-wal"])
def test_journal_readable_by_others_is_refused(host, tmp_path, suffix):
    host.run("key", "generate", check=EXIT_OK)
    j = tmp_path / ("kms-host.db" + suffix)
    j.write_bytes(b"")
    j.chmod(0o644)
    p = host.run("key", "list", check=EXIT_CONFIG)
    assert f"database journal {j}" in p.stderr and "chmod 600" in p.stderr, p.stderr
    j.unlink()
    host.run("key", "list", check=EXIT_OK)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775])
def test_database_directory_writable_by_others_is_refused(tmp_path, mode):
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(mode)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"general_settings:\n  kms_db_path: {d}/keys.db\n")
    p = Host(cfg).run("key", "generate", check=EXIT_CONFIG)
    assert f"directory {d} is writable by group or others" in p.stderr, p.stderr
    assert f"chmod go-w {d}" in p.stderr
    assert not (d / "keys.db").exists()  # refused before anything was written


@pytest.mark.sqlite_only
def test_database_symlink_into_a_shared_directory_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"general_settings:\n  kms_db_path: {tmp_path}/link.db\n")
    Host(cfg).run("--db", str(shared / "keys.db"), "key", "generate", check=EXIT_OK)
    (tmp_path / "link.db").symlink_to(shared / "keys.db")
    Host(cfg).run("key", "list", check=EXIT_OK)
    journal = shared / "keys.db-journal"  # SQLite's journal is beside the target
    journal.write_bytes(b"")
    journal.chmod(0o644)
    p = Host(cfg).run("key", "list", check=EXIT_CONFIG)
    assert f"database journal {journal}" in p.stderr, p.stderr
    journal.unlink()
    shared.chmod(0o1777)
    p = Host(cfg).run("key", "list", check=EXIT_CONFIG)
    assert f"directory {shared} is writable by group or others" in p.stderr, p.stderr


@pytest.mark.sqlite_only
def test_new_database_and_lock_are_private(host, tmp_path):
    host.run("key", "generate", check=EXIT_OK)
    for f in ("kms-host.db", "kms-host.db.lock"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o600, f
    assert not (tmp_path / "kms-host.db-journal").exists()


@pytest.mark.sqlite_only
def test_newer_schema_is_refused(host, tmp_path):
    host.run("key", "generate", check=EXIT_OK)
    con = sqlite3.connect(tmp_path / "kms-host.db")
    assert con.execute("PRAGMA user_version").fetchone()[0] == 2  # HOST_SCHEMA_VERSION
    con.execute("PRAGMA user_version=99")
    con.commit()
    con.close()
    for args in (["key", "list"], ["key", "generate"], ["sync"]):
        p = host.run(*args, check=EXIT_CONFIG)
        assert "schema version 99, newer than this kms-host understands (2)" in p.stderr, p.stderr
    con = sqlite3.connect(tmp_path / "kms-host.db")
    assert con.execute("PRAGMA user_version").fetchone()[0] == 99  # left alone
    con.close()


# --- item 4: no core dumps, no ptrace ---------------------------------------------------

def _blocked_host(args, extra_opts=()):
    """kms-host `secret put X` waiting on its standard input, run as a user
    other than root when we are root (root's /proc entries are root's
    anyway), with a core limit it could otherwise keep. Returns (proc, dir)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="kms-harden-"))
    d.chmod(0o755)
    cfg = d / "config.yaml"
    cfg.write_text("general_settings: {key_management_system: env}\n")
    cfg.chmod(0o644)
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] \
        if os.geteuid() == 0 else []
    soft = 1 << 20

    def core_limit():
        resource.setrlimit(resource.RLIMIT_CORE, (soft, resource.getrlimit(resource.RLIMIT_CORE)[1]))

    cmd = drop + [str(HOST), *extra_opts, "--config", str(cfg), "--plugin-dir", str(PLUGIN_DIR),
                  *args]
    env = base_env()
    # AddressSanitizer lowers the soft core limit itself unless told not to
    env["ASAN_OPTIONS"] += ":disable_coredump=0"
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, preexec_fn=core_limit)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # until it sleeps in read(2) as kms-host
        try:
            comm = pathlib.Path(f"/proc/{proc.pid}/comm").read_text().strip()
            state = pathlib.Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            comm, state = "", ""
        if comm == "kms-host" and state == "S":
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("kms-host never blocked on its standard input")
    return proc, d


def _core_limit(pid):
    for line in pathlib.Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4:6]
    raise AssertionError("no core limit in /proc/pid/limits")


def _finish(proc, d):
    out, err = proc.communicate(b"value\n", timeout=30)
    shutil.rmtree(d)
    assert proc.returncode == EXIT_FAIL and b"UNSUPPORTED" in err, err  # env is read-only


def test_core_dumps_and_ptrace_are_off():
    proc, d = _blocked_host(["secret", "put", "X"])
    try:
        assert _core_limit(proc.pid) == ["0", "0"]
        # A process that is not dumpable has its /proc entries owned by root,
        # and ptrace attach and /proc/<pid>/mem are refused to its own user.
        assert os.stat(f"/proc/{proc.pid}/status").st_uid == 0
        # and whatever it or SQLite creates (journal included) is private
        status = pathlib.Path(f"/proc/{proc.pid}/status").read_text()
        assert "\nUmask:\t0077\n" in status, status
    finally:
        _finish(proc, d)


def test_allow_debugging_keeps_them():
    proc, d = _blocked_host(["secret", "put", "X"], ["--allow-debugging"])
    try:
        assert _core_limit(proc.pid)[0] == str(1 << 20)
        runner = 65534 if os.geteuid() == 0 else os.geteuid()
        assert os.stat(f"/proc/{proc.pid}/status").st_uid == runner
    finally:
        _finish(proc, d)


# --- item 6: the delivery lock ---------------------------------------------------------

class HeldLock:
    """Holds <db>.lock the way a kms-host does: flock + its pid inside."""

    def __init__(self, db):
        self.path = pathlib.Path(str(db) + ".lock")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    def release(self):
        os.close(self.fd)


@pytest.mark.sqlite_only
def test_read_only_commands_do_not_take_the_lock(host, tmp_path):
    host.run("key", "generate", "--alias", "a", check=EXIT_OK)  # the database exists
    lock = HeldLock(tmp_path / "kms-host.db")
    try:
        # with no timeout in play at all: they must not wait
        for args in (["secret", "get", "OPENAI_API_KEY"], ["resolve"], ["key", "list"],
                     ["plugins"], ["refresh"]):
            host.run(*args, timeout=30, check=EXIT_OK)
    finally:
        lock.release()


@pytest.mark.sqlite_only
def test_key_change_waits_a_bounded_time_and_names_the_holder(host, tmp_path):
    host.run("key", "generate", "--alias", "a", check=EXIT_OK)
    lock = HeldLock(tmp_path / "kms-host.db")
    try:
        for args, how in ((["key", "generate"], {"KMS_HOST_LOCK_TIMEOUT": "0"}),
                          (["--lock-timeout", "1", "key", "delete", "--alias", "a"], {}),
                          (["sync"], {"KMS_HOST_LOCK_TIMEOUT": "0"})):
            p = host.run(*args, extra_env=how, timeout=30, check=EXIT_FAIL)
            assert f"{lock.path} is held by process {os.getpid()}" in p.stderr, p.stderr
            assert "--lock-timeout" in p.stderr
        # nothing changed while it was held
        assert "a " in host.run("key", "list", check=EXIT_OK).stdout
    finally:
        lock.release()
    host.run("key", "delete", "--alias", "a", check=EXIT_OK, extra_env={"KMS_HOST_LOCK_TIMEOUT": 0})


@pytest.mark.parametrize("value", ["-1", "1.5", "x", "86401", "99999999999999999999", ""])
def test_bad_lock_timeout(host, value):
    p = host.run("--lock-timeout", value, "key", "list", check=EXIT_USAGE)
    assert "--lock-timeout" in p.stderr and "seconds" in p.stderr
    p = host.run("key", "list", extra_env={"KMS_HOST_LOCK_TIMEOUT": value} if value else
                 {"KMS_HOST_LOCK_TIMEOUT": " "}, check=EXIT_CONFIG)
    assert "KMS_HOST_LOCK_TIMEOUT" in p.stderr


# --- also fix: terminal escapes, --key -, the secret put limit --------------------------

HOSTILE = "ok\x1b]0;owned\x07\x1b[2J\rhidden\x9b"  # OSC title, clear screen, CR, 8-bit CSI byte


def _run_on_pty(host, *args, extra_env):
    master, slave = pty.openpty()
    cmd = [str(HOST), "--config", str(host.config), "--plugin-dir", str(PLUGIN_DIR), *args]
    env = dict(host.env, **extra_env)
    proc = subprocess.Popen(cmd, stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], 30)
        if not r:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    err = proc.stderr.read()
    proc.stderr.close()
    return proc.wait(30), out, err


def test_secret_get_escapes_control_characters_on_a_terminal(host):
    env = {"KMS_HOSTILE": HOSTILE}
    env_bytes = HOSTILE.encode("utf-8", "surrogateescape")
    rc, out, err = _run_on_pty(host, "secret", "get", "HOSTILE", extra_env=env)
    assert rc == EXIT_OK, err
    assert b"\x1b" not in out and b"\x07" not in out and b"\xc2\x9b" not in out, out
    assert b"\\x1b]0;owned\\x07\\x1b[2J\\x0dhidden\\xc2\\x9b" in out, out
    assert b"escaped" in err
    # through a pipe the bytes are the value's, unchanged
    p = subprocess.run([str(HOST), "--config", str(host.config), "--plugin-dir", str(PLUGIN_DIR),
                        "secret", "get", "HOSTILE"], env=dict(host.env, **env),
                       capture_output=True, timeout=30)
    assert p.returncode == EXIT_OK and p.stdout == env_bytes + b"\n"
    # a plain value on a terminal is shown as is, without a warning
    rc, out, err = _run_on_pty(host, "secret", "get", "OPENAI_API_KEY", extra_env={})
    assert rc == EXIT_OK and out.replace(b"\r\n", b"\n") == b"sk-provider-0123456789abcdef\n"
    assert b"escaped" not in err


def test_key_from_standard_input(host):
    g = parse_fields(host.run("key", "generate", "--alias", "s", check=EXIT_OK).stdout)
    r = parse_fields(host.run("key", "regenerate", "--key", "-", input=g["key"] + "\n",
                              check=EXIT_OK).stdout)
    assert r["key_id"] == g["key_id"] and r["key"] != g["key"]
    host.run("key", "delete", "--key=-", input=g["key"], check=EXIT_FAIL)  # the old one is gone
    p = host.run("key", "delete", "--key", "-", input=r["key"] + "\r\n", check=EXIT_OK)
    assert parse_fields(p.stdout)["deleted"] == g["key_id"]
    assert "no virtual key" not in p.stderr
    for bad in ("", "\n", "x" * 300):
        p = host.run("key", "delete", "--key", "-", input=bad, check=EXIT_FAIL)
        assert "standard input" in p.stderr, p.stderr


def test_secret_put_limit_is_one_mib(host):
    mib = 1 << 20
    # at the limit (plus the newline that is stripped) the value reaches the
    # plugin -- env cannot write, so it answers UNSUPPORTED
    p = host.run("secret", "put", "BIG", input="v" * mib + "\n", check=EXIT_FAIL)
    assert "UNSUPPORTED" in p.stderr, p.stderr[:300]
    for n in (mib + 1, 2 * mib - 1, 3 * mib):
        p = host.run("secret", "put", "BIG", input="v" * n, check=EXIT_FAIL)
        assert "at most 1048576 bytes (1 MiB)" in p.stderr, p.stderr[:300]
        assert "UNSUPPORTED" not in p.stderr
