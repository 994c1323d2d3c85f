"""Shared fixtures for the kms-host end-to-end suites.

They drive the real kms-host binary (KMS_BINARY_DIR/host_stub/kms-host) with
plugins from KMS_PLUGIN_DIR, as CTest sets them; run by hand they default to
build/. Standard library + pytest only (Debian's python3-pytest)."""

import os
import pathlib
import subprocess

import pytest

SRC = pathlib.Path(os.environ.get("KMS_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BUILD = pathlib.Path(os.environ.get("KMS_BINARY_DIR", SRC / "build"))
PLUGIN_DIR = pathlib.Path(os.environ.get("KMS_PLUGIN_DIR", BUILD / "plugins"))
HOST = BUILD / "host_stub" / "kms-host"

# Exit statuses (host_stub/host.h, README.md).
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_CONFIG, EXIT_QUEUED = 0, 1, 2, 3, 4
EXIT_TEST_CRASH = 99  # KMS_HOST_CRASH_AFTER_COMMIT=1


def base_env(**extra):
    """A clean environment: no KMS_*/VAULT_*/HCP_* leaking from the caller,
    sanitizer options kept."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KMS_", "VAULT_", "HCP_", "BAO_"))}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
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


@pytest.fixture(scope="session", autouse=True)
def _need_binary():
    if not HOST.exists():
        pytest.fail(f"{HOST} is not built (cmake --build build)")
    if not (PLUGIN_DIR / "env.so").exists():
        pytest.fail(f"{PLUGIN_DIR}/env.so is not built")
