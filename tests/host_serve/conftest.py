"""pytest fixtures for tests/host_serve: the Vault-compatible server, TLS
certificates, and a running `kms-host serve` (helpers in serve_helpers.py)."""

import pathlib
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "host"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from kms_host_helpers import (MAKE_CERTS, VAULT_PLUGIN, VAULT_SERVER, VaultServer,  # noqa: E402
                              require_binary)


@pytest.fixture(scope="session", autouse=True)
def _need_binary_plugin_server():
    # A missing binary, plugin or server fails the suite; it never skips green.
    require_binary()
    if not VAULT_PLUGIN.exists():
        pytest.fail(f"{VAULT_PLUGIN} is not built (cmake --build build)", pytrace=False)
    if not VAULT_SERVER.exists():
        pytest.fail(f"{VAULT_SERVER} is missing", pytrace=False)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", str(MAKE_CERTS), str(d)], check=True, capture_output=True)
    return d


@pytest.fixture
def vault(tmp_path, certs):
    v = VaultServer(tmp_path, certs).start()
    yield v
    v.stop()
