"""A throwaway PostgreSQL server for tests (Debian's postgresql-15).

PostgresServer(workdir).start() runs initdb and the server in a private
temporary directory on a free loopback port, as an unprivileged user when
the tests run as root (PostgreSQL refuses to run as root): via setpriv as
`nobody`, the directory chowned to it. The server listens on 127.0.0.1
only, with its unix socket in a directory that user owns, and password
(SCRAM) authentication, so clients exercise the password path.

A missing PostgreSQL is an ERROR (RuntimeError naming the package), never a
skip: CI installs it through scripts/deps. Standard library only.
"""

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PG_BIN = os.environ.get("KMS_PG_BIN", "/usr/lib/postgresql/15/bin")
READY_TIMEOUT = 30  # seconds


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster. stop() + start() keeps the data and the port
    (a restart as a client sees it)."""

    superuser = "kms"

    def __init__(self, workdir=None):
        for tool in ("initdb", "postgres"):
            if not os.access(os.path.join(PG_BIN, tool), os.X_OK):
                raise RuntimeError(f"{PG_BIN}/{tool} not found: install postgresql-15 "
                                   "(scripts/deps test)")
        if not shutil.which("psql"):
            raise RuntimeError("psql not found: install postgresql-15 (scripts/deps test)")
        self.as_root = os.geteuid() == 0
        # A root-run test tree (TMPDIR in the build tree) may not be
        # traversable by `nobody`: then the cluster lives under /tmp.
        base = "/tmp" if self.as_root else workdir
        self.dir = tempfile.mkdtemp(prefix="kms-pg-", dir=base)
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.password = "pw-" + secrets.token_hex(12)
        self.port = _free_port()
        self.proc = None
        os.mkdir(self.sock, 0o700)
        if self.as_root:
            ent = pwd.getpwnam("nobody")
            self.uid, self.gid = ent.pw_uid, ent.pw_gid
            for p in (self.dir, self.sock):
                os.chown(p, self.uid, self.gid)
        os.chmod(self.dir, 0o700)
        self._initdb()

    def _as_user(self, cmd):
        if not self.as_root:
            return cmd
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "--"] + cmd

    def _initdb(self):
        pwfile = os.path.join(self.dir, "pwfile")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        if self.as_root:
            os.chown(pwfile, self.uid, self.gid)
        os.chmod(pwfile, 0o600)
        p = subprocess.run(self._as_user([
            os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", self.superuser,
            "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync",
            "--locale=C"]), capture_output=True, text=True, cwd=self.dir)
        os.unlink(pwfile)
        if p.returncode != 0:
            raise RuntimeError(f"initdb failed ({p.returncode}): {p.stdout}{p.stderr}")

    def start(self):
        log = open(self.log_path, "a")
        if self.as_root:
            os.chown(self.log_path, self.uid, self.gid)
        self.proc = subprocess.Popen(self._as_user([
            os.path.join(PG_BIN, "postgres"), "-D", self.data, "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.sock}",
            "-c", "fsync=off", "-c", "max_connections=200", "-c", "log_min_messages=warning"]),
            stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.proc.returncode}): {self.log()}")
            if self._ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postgres not ready in {READY_TIMEOUT} s: {self.log()}")
            time.sleep(0.1)

    def _ready(self):
        p = subprocess.run([os.path.join(PG_BIN, "pg_isready"), "-q", "-h", "127.0.0.1", "-p",
                            str(self.port)], capture_output=True)
        return p.returncode == 0

    def stop(self, mode=signal.SIGINT):
        """SIGINT: fast shutdown (clients are disconnected); SIGKILL: a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(mode)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def url(self, db="postgres", password=True):
        cred = f"{self.superuser}:{self.password}" if password else self.superuser
        return f"postgresql://{cred}@127.0.0.1:{self.port}/{db}"

    def psql(self, sql, db="postgres"):
        """Run SQL; rows as lists of strings (tab-separated, unaligned)."""
        env = dict(os.environ, PGPASSWORD=self.password, PGCONNECT_TIMEOUT="10")
        p = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", "-P", "null=<NULL>",
                            "-v", "ON_ERROR_STOP=1",
                            "-h", "127.0.0.1", "-p", str(self.port), "-U", self.superuser,
                            "-d", db, "-c", sql], capture_output=True, text=True, env=env,
                           timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"psql: {p.stderr}")
        return [line.split("\t") for line in p.stdout.splitlines() if line]

    def create_database(self, name):
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)
