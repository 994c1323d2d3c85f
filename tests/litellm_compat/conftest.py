"""Fixtures for tests/litellm_compat: the kms-host binary, the plugin
directories, and tests/vault_server (TLS, test controls, request log) on a
free loopback port. Standard library + pytest only (Debian's python3-pytest);
a missing binary or plugin fails, never skips."""

import json
import os
import pathlib
import signal
import ssl
import subprocess
import textwrap
import time
import urllib.error
import urllib.request

import pytest

SRC = pathlib.Path(os.environ.get("KMS_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BUILD = pathlib.Path(os.environ.get("KMS_BINARY_DIR", SRC / "build"))
PLUGIN_DIR = pathlib.Path(os.environ.get("KMS_PLUGIN_DIR", BUILD / "plugins"))
PROBE_DIR = pathlib.Path(os.environ.get("KMS_PROBE_PLUGIN_DIR",
                                        BUILD / "tests" / "litellm_compat" / "plugins"))
HOST = BUILD / "host_stub" / "kms-host"
PYTHON = "/usr/bin/python3"
VAULT_SERVER = SRC / "tests" / "vault_server" / "server.py"
MAKE_CERTS = SRC / "tests" / "vault_server" / "make_certs.sh"

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_CONFIG = 0, 1, 2, 3


@pytest.fixture(scope="session", autouse=True)
def _built():
    for f in (HOST, PLUGIN_DIR / "env.so", PLUGIN_DIR / "docker.so",
              PLUGIN_DIR / "hashicorp_vault.so", PROBE_DIR / "probe.so", VAULT_SERVER):
        if not f.exists():
            pytest.fail(f"{f} is missing (build the tree: cmake --build build)")


def clean_env(**extra):
    """No KMS_/VAULT_/HCP_/BAO_ variables from the caller; sanitizer options kept."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KMS_", "VAULT_", "HCP_", "BAO_"))}
    asan = env.get("ASAN_OPTIONS", "detect_leaks=1")
    if "intercept_tls_get_addr" not in asan:
        asan += ":intercept_tls_get_addr=0"  # see tests/host/kms_host_helpers.py
    env["ASAN_OPTIONS"] = asan
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Host:
    """kms-host with one config file (written dedented; `crlf` writes CRLF)."""

    def __init__(self, tmp_path, text, env=None, plugin_dir=PLUGIN_DIR, crlf=False, raw=None):
        self.config = tmp_path / "config.yaml"
        body = raw if raw is not None else textwrap.dedent(text)
        if crlf:
            body = body.replace("\n", "\r\n")
        self.config.write_bytes(body.encode() if isinstance(body, str) else body)
        self.env = env if env is not None else clean_env()
        self.plugin_dir = plugin_dir

    def run(self, *args, check=None, input=None, extra_env=None):
        env = dict(self.env)
        env.update({k: str(v) for k, v in (extra_env or {}).items()})
        p = subprocess.run([str(HOST), "--config", str(self.config), "--plugin-dir",
                            str(self.plugin_dir)] + list(args), env=env, input=input,
                           capture_output=True, text=True, timeout=120)
        if check is not None:
            assert p.returncode == check, (
                f"{args}: exit {p.returncode}, wanted {check}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def settings(self):
        """What the probe plugin received, as an ordered list of (key, value)."""
        out = self.run("secret", "get", "__settings__", check=EXIT_OK).stdout
        return [tuple(line.split("=", 1)) for line in out.rstrip("\n").split("\n") if line]


class Vault:
    """tests/vault_server/server.py over TLS with --test-controls."""

    def __init__(self, workdir, certs):
        self.workdir, self.certs = pathlib.Path(workdir), pathlib.Path(certs)
        self.ctx = ssl.create_default_context(cafile=str(self.certs / "ca.pem"))
        ready = self.workdir / f"vault-ready-{time.monotonic_ns()}"
        log = open(self.workdir / "vault-server.log", "a")
        self.proc = subprocess.Popen(
            [PYTHON, str(VAULT_SERVER), "--port", "0", "--ready-file", str(ready),
             "--tls-cert", str(self.certs / "server.pem"), "--tls-key", str(self.certs / "server.key"),
             "--test-controls"], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("vault server did not start: " +
                                   (self.workdir / "vault-server.log").read_text())
            time.sleep(0.02)
        self.url = ready.read_text().strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("X-Vault-Token", "root")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None

    def write(self, name, data):
        st, body = self.call("POST", f"/v1/secret/data/{name}", {"data": data})
        assert st in (200, 204), (st, body)

    def read(self, name):
        st, body = self.call("GET", f"/v1/secret/data/{name}")
        return None if st == 404 else body["data"]["data"]

    def seal(self, sealed=True):
        assert self.call("POST", "/__test__/seal", {"sealed": sealed})[0] == 200

    def clear_log(self):
        assert self.call("DELETE", "/__test__/requests")[0] in (200, 204)

    def kv_requests(self):
        """(method, path, body as JSON or None) of every KV request, in order."""
        st, body = self.call("GET", "/__test__/requests")
        assert st == 200
        out = []
        for r in body["requests"]:
            if r["path"].startswith("/v1/secret/"):
                b = r.get("body")
                out.append((r["method"], r["path"], json.loads(b) if b else None))
        return out

    def env(self, **extra):
        """The plugin's environment, as LiteLLM users set it."""
        return clean_env(HCP_VAULT_ADDR=self.url, HCP_VAULT_TOKEN="root",
                         VAULT_CACERT=self.certs / "ca.pem", VAULT_MAX_RETRIES=0,
                         HCP_VAULT_REFRESH_INTERVAL=0, **extra)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", str(MAKE_CERTS), str(d)], check=True, capture_output=True)
    return d


@pytest.fixture
def vault(tmp_path, certs):
    v = Vault(tmp_path, certs)
    yield v
    v.stop()
