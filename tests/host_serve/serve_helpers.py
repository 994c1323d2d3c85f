"""Run `kms-host serve` and call it the way LiteLLM's docs' curl examples
do (python urllib: method, JSON body, Authorization / x-litellm-api-key)."""

import json
import pathlib
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

from kms_host_helpers import HOST, PLUGIN_DIR

MASTER = "sk-1234"  # the master key in LiteLLM's docs

CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
general_settings:
  master_key: {master}
  key_management_system: hashicorp_vault
  key_management_settings:
    store_virtual_keys: true
    access_mode: read_and_write
"""


def write_config(tmp_path, master=MASTER, text=None):
    cfg = pathlib.Path(tmp_path) / "config.yaml"
    cfg.write_text(text if text is not None else CONFIG.format(master=master))
    return cfg


class Serve:
    """A `kms-host serve` process on a free loopback port."""

    def __init__(self, config, env, args=()):
        self.config = pathlib.Path(config)
        self.env = env
        self.errpath = self.config.parent / "serve.stderr"
        self._err = open(self.errpath, "w")
        self.proc = subprocess.Popen(
            [str(HOST), "--config", str(self.config), "--plugin-dir", str(PLUGIN_DIR), "serve",
             "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE, stderr=self._err, env=env, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening: "):
            self.proc.wait(timeout=30)
            raise AssertionError(f"serve did not start (exit {self.proc.returncode}): "
                                 f"{line}{self.stderr()}")
        self.url = line.split(" ", 1)[1].strip()

    def stderr(self):
        if not self._err.closed:
            self._err.flush()
        return self.errpath.read_text()

    def call(self, method, path, body=None, key=MASTER, header="Authorization", raw=None,
             timeout=60):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if key is not None:
            req.add_header(header, f"Bearer {key}" if header == "Authorization" else key)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self.proc.stdout.close()
        self._err.close()
        return rc


def key_table(db_path):
    """{secret_name: token_hash} of every stored key, and the queued ops."""
    con = sqlite3.connect(db_path)
    try:
        keys = con.execute("SELECT secret_name, token_hash FROM virtual_keys").fetchall()
        outbox = con.execute("SELECT op, secret_name FROM outbox ORDER BY seq").fetchall()
        return dict(keys), outbox
    finally:
        con.close()


def wait_until(pred, timeout=30.0, step=0.1):
    """Poll pred() until true (the worker's retries are asynchronous)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()
