"""python3 -m kmsplug: `plugins` and `get`, exit statuses and messages."""

import os
import subprocess
import sys

from conftest import HERE, PLUGIN_DIR, TEST_PLUGIN_DIR


def cli(*args, **env):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("KMS_PLUGIN_PATH", "KMSPLUG_PLUGIN"))}
    e["PYTHONPATH"] = str(HERE.parent)
    e.update(env)
    return subprocess.run([sys.executable, "-m", "kmsplug", *args], env=e, capture_output=True,
                          timeout=60)


def test_plugins_lists_name_version_abi_capabilities():
    p = cli("plugins", "--plugin-dir", str(TEST_PLUGIN_DIR))
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().splitlines() == [
        f"statusbox\t0.0.1-test\tABI 1.0\tread,write,delete,refresh,thread-safe\t{TEST_PLUGIN_DIR}/statusbox.so",
        f"statusbox_serial\t0.0.1-test\tABI 1.0\tread,write,delete,refresh\t{TEST_PLUGIN_DIR}/statusbox_serial.so",
        f"statusbox_v11\t0.0.1-test\tABI 1.1\tread,write,delete,refresh,thread-safe,list,notify"
        f"\t{TEST_PLUGIN_DIR}/statusbox_v11.so"]


def test_plugins_uses_kms_plugin_path_and_reports_a_missing_directory(tmp_path):
    p = cli("plugins", KMS_PLUGIN_PATH=str(PLUGIN_DIR))
    assert p.returncode == 0 and b"hashicorp_vault\t" in p.stdout
    p = cli("plugins", "--plugin-dir", str(tmp_path / "none"))
    assert p.returncode == 1 and p.stderr.startswith(b"kmsplug plugins: NOT_FOUND")


def test_get_prints_the_raw_value():
    p = cli("get", "CLI_SECRET", "--plugin", "env", "--plugin-dir", str(PLUGIN_DIR),
            CLI_SECRET="v\u00e9")
    assert (p.returncode, p.stdout, p.stderr) == (0, "v\u00e9".encode(), b"")
    p = cli("get", "SECRET", "--plugin-dir", str(PLUGIN_DIR), "--setting", "prefix=CLI_",
            KMSPLUG_PLUGIN="env", CLI_SECRET="prefixed")
    assert (p.returncode, p.stdout) == (0, b"prefixed")


def test_get_failures_and_usage():
    p = cli("get", "NOPE", "--plugin", "env", "--plugin-dir", str(PLUGIN_DIR))
    assert p.returncode == 1 and p.stdout == b""
    assert p.stderr.startswith(b"kmsplug get: NOT_FOUND: env: environment variable NOPE is not set")
    p = cli("get", "status/5", "--plugin", "statusbox", "--plugin-dir", str(TEST_PLUGIN_DIR))
    assert p.returncode == 1
    assert p.stderr == b"kmsplug get: UNAVAILABLE: statusbox: status requested by name (backend status 405)\n"
    assert cli("get", "X").returncode == 2                      # no plugin
    assert cli("get", "X", "--plugin", "env", "--setting", "novalue").returncode == 2
    assert cli("frobnicate").returncode == 2
    p = cli("plugins", KMSPLUG_LIBRARY="/nonexistent/libkmsloader.so")
    assert p.returncode == 1 and b"/nonexistent/libkmsloader.so" in p.stderr
