"""Start and stop a test server as a subprocess (the one Python launcher).

Used by the pytest suites (tests/vault_server/conftest.py,
tests/host/kms_host_helpers.py); the C tests have tests/support/vault_fixture.c.
The server runs on Debian's /usr/bin/python3 on a free loopback port; start()
waits for its ready file, stop() sends SIGTERM (SIGKILL after 10 s).
"""

import os
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
READY_TIMEOUT = 20                # seconds a server may take to listen


class ServerProcess:
    """One server subprocess: script + arguments, its log in workdir.

    stop() then start() again reuses the port the first start got, so a
    client sees the "same" server come back (with empty state)."""

    def __init__(self, script, args, workdir, port=0, log_name=None):
        self.script = str(script)
        self.args = [str(a) for a in args]
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        tag = uuid.uuid4().hex[:8]
        self.log_path = os.path.join(self.workdir, log_name or "server-%s.log" % tag)
        self.pid_file = os.path.join(self.workdir, "pid-%s" % tag)
        self.port = port
        self.proc = None
        self.url = self.host = None

    def start(self):
        ready = os.path.join(self.workdir, "ready-%s" % uuid.uuid4().hex[:8])
        cmd = [PYTHON, self.script, "--port", str(self.port), "--ready-file", ready,
               "--pid-file", self.pid_file] + self.args
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while not os.path.exists(ready):
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with status %d: %s"
                                   % (self.script, self.proc.returncode, self.log()))
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("%s did not become ready in %d s: %s"
                                   % (self.script, READY_TIMEOUT, self.log()))
            time.sleep(0.02)
        with open(ready) as f:
            self.url = f.read().strip()
        parsed = urllib.parse.urlsplit(self.url)
        self.host, self.port = parsed.hostname, parsed.port
        return self

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s; returns the exit status (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode
