"""A tests/vault_server/server.py process for the bridge suites: plain HTTP on
a free loopback port, test controls on, namespace team1 and mount kv2 (for the
team-override cases), stopped with SIGTERM (exit status 0 checked)."""

import json
import pathlib
import signal
import subprocess
import time
import urllib.error
import urllib.request

from conftest import SRC

PYTHON = "/usr/bin/python3"
SERVER = SRC / "tests" / "vault_server" / "server.py"


class VaultServer:
    def __init__(self, workdir):
        self.workdir = pathlib.Path(workdir)
        self.proc = None
        self.url = None

    def start(self):
        ready = self.workdir / "vault-ready"
        self.log = self.workdir / "vault-server.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [PYTHON, str(SERVER), "--port", "0", "--ready-file", str(ready), "--test-controls",
                 "--namespace", "team1", "--mount", "kv2", "--exit-with-parent"],
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError("vault server exited: " + self.log.read_text())
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("vault server did not become ready in 30 s")
            time.sleep(0.02)
        self.url = ready.read_text().strip()
        return self

    def stop(self):
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        self.proc = None
        return rc

    def request(self, method, path, body=None, token="root"):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            req.add_header("X-Vault-Token", token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, (json.loads(raw) if raw else None)

    def read(self, path, mount="secret"):
        """data.data.key at <mount>/data/<path>, or None when absent or deleted."""
        st, body = self.request("GET", f"/v1/{mount}/data/{path}")
        if st == 404:
            return None
        assert st == 200, (st, body)
        return body["data"]["data"]["key"]

    def data(self, path, mount="secret"):
        """The whole KV data at <mount>/data/<path> (key and, as LiteLLM writes it, description)."""
        st, body = self.request("GET", f"/v1/{mount}/data/{path}")
        assert st == 200, (st, body)
        return body["data"]["data"]

    def write(self, path, value, mount="secret"):
        st, body = self.request("POST", f"/v1/{mount}/data/{path}", {"data": {"key": value}})
        assert st in (200, 204), (st, body)

    def metadata(self, path):
        st, body = self.request("GET", f"/v1/secret/metadata/{path}")
        assert st == 200, (st, body)
        return body["data"]

    def seal(self, sealed=True):
        assert self.request("POST", "/__test__/seal", {"sealed": sealed})[0] == 200

    def fault(self, **fault):
        assert self.request("POST", "/__test__/faults", fault)[0] == 200

    def clear_faults(self):
        self.request("DELETE", "/__test__/faults")

    def requests(self):
        return self.request("GET", "/__test__/requests")[1]["requests"]

    def plugin_env(self):
        """What a gateway's environment holds for hashicorp_vault."""
        return {"HCP_VAULT_ADDR": self.url, "HCP_VAULT_TOKEN": "root", "VAULT_MAX_RETRIES": "0",
                "HCP_VAULT_REFRESH_INTERVAL": "0"}
