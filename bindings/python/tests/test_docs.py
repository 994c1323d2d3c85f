"""docs/litellm.md, tried step by step: its kmsplug_manager.py, config.yaml and
environment blocks are taken from the page as written (only the Vault
address and token are pointed at the test server), loaded the way LiteLLM's
proxy loads them (stand-in), and every claim of "Start LiteLLM and try it"
is checked against the Vault-compatible server."""

import asyncio
import os
import re
import subprocess
import sys

import pytest

import litellm
from litellm.proxy import proxy_server
from litellm.proxy.hooks import key_management_event_hooks as hooks

from conftest import HERE, PLUGIN_DIR, SRC
from vault import VaultServer

DOC = SRC / "docs" / "litellm.md"


def blocks():
    """{title: text} of the fenced blocks that carry title="..."."""
    found = re.findall(r'^```\w+ title="([^"]+)"\n(.*?)^```', DOC.read_text(), re.S | re.M)
    return {title: text for title, text in found}


@pytest.fixture
def deployment(tmp_path, monkeypatch):
    vault = VaultServer(tmp_path).start()
    b = blocks()
    assert set(b) == {"kmsplug_manager.py", "config.yaml", "environment"}
    for k in list(os.environ):
        if k.startswith(("KMS_", "KMSPLUG_", "HCP_VAULT_", "VAULT_")) and k != "KMSPLUG_LIBRARY":
            monkeypatch.delenv(k)
    for name, value in re.findall(r'^export (\w+)="([^"]*)"', b["environment"], re.M):
        monkeypatch.setenv(name, value)
    assert {"HCP_VAULT_ADDR", "HCP_VAULT_TOKEN", "LITELLM_MASTER_KEY"} <= set(os.environ)
    monkeypatch.setenv("HCP_VAULT_ADDR", vault.url)      # the only changes: this Vault,
    monkeypatch.setenv("HCP_VAULT_TOKEN", "root")        # its token,
    monkeypatch.setenv("KMS_PLUGIN_PATH", str(PLUGIN_DIR))  # and the build tree's plugins
    monkeypatch.setenv("HCP_VAULT_REFRESH_INTERVAL", "0")
    (tmp_path / "kmsplug_manager.py").write_text(b["kmsplug_manager.py"])
    (tmp_path / "config.yaml").write_text(b["config.yaml"])
    yield vault, tmp_path / "config.yaml"
    if litellm.secret_manager_client is not None:
        litellm.secret_manager_client.close()
    litellm.secret_manager_client = litellm._key_management_settings = None
    litellm._key_management_system = None
    monkeypatch.delenv("KMSPLUG_PLUGIN", raising=False)  # set by environment_variables
    assert vault.stop() == 0


def test_the_page_works_step_by_step(deployment):
    vault, config = deployment
    vault.write("OPENAI_API_KEY", "sk-openai-from-vault")

    # Step 5: start: the proxy loads config.yaml and resolves the model's api_key.
    _, models = proxy_server.load_config(str(config))
    assert type(litellm.secret_manager_client).__name__ == "KmsplugSecretManager"
    assert os.environ["KMSPLUG_PLUGIN"] == "hashicorp_vault"
    assert models == [{"model_name": "gpt-4o",
                       "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-openai-from-vault"}}]
    assert litellm.secret_manager_client.client().module.name == "hashicorp_vault"

    # Step 1's check: Python finds the loader and the plugins.
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    p = subprocess.run([sys.executable, "-m", "kmsplug", "plugins"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and "\nhashicorp_vault\t" in "\n" + p.stdout, p.stderr

    # /key/generate with key_alias my-team-key: stored under litellm/.
    asyncio.run(hooks.key_generated("my-team-key", "sk-generated-1"))
    assert vault.read("litellm/my-team-key") == "sk-generated-1"
    # ... and the page's check command shows it.
    p = subprocess.run([sys.executable, "-m", "kmsplug", "get", "litellm/my-team-key", "--plugin",
                        "hashicorp_vault"], env=env, capture_output=True, timeout=60)
    assert (p.returncode, p.stdout) == (0, b"sk-generated-1"), p.stderr

    # /key/regenerate: same alias replaces the value, a new alias moves it.
    asyncio.run(hooks.key_rotated("my-team-key", "my-team-key", "sk-generated-2"))
    assert vault.read("litellm/my-team-key") == "sk-generated-2"
    asyncio.run(hooks.key_rotated("my-team-key", "renamed-key", "sk-generated-3"))
    assert (vault.read("litellm/my-team-key"), vault.read("litellm/renamed-key")) == (None, "sk-generated-3")

    # /key/delete.
    asyncio.run(hooks.key_deleted("renamed-key"))
    assert vault.read("litellm/renamed-key") is None


def test_the_failure_table(deployment, monkeypatch, caplog):
    vault, config = deployment
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-fallback")
    _, models = proxy_server.load_config(str(config))  # missing in Vault -> the environment
    assert models[0]["litellm_params"]["api_key"] == "sk-env-fallback"
    assert "No secret found in Custom Secret Manager for OPENAI_API_KEY" in caplog.text
    vault.seal(True)
    caplog.clear()
    monkeypatch.setenv("VAULT_MAX_RETRIES", "0")
    litellm.secret_manager_client.close()              # a fresh client reads VAULT_MAX_RETRIES
    _, models = proxy_server.load_config(str(config))  # sealed -> logged, then the environment
    assert models[0]["litellm_params"]["api_key"] == "sk-env-fallback"
    assert "failed: UNAVAILABLE (backend status 503)" in caplog.text
    assert "Defaulting to os.environ value for key=OPENAI_API_KEY" in caplog.text
    caplog.clear()
    asyncio.run(hooks.key_generated("k", "sk-not-stored"))  # store fails: a warning only
    assert "Failed to store virtual key in secret manager: UNAVAILABLE" in caplog.text
    with pytest.raises(Exception, match="UNAVAILABLE"):  # delete: not caught by the hook
        asyncio.run(hooks.key_deleted("k"))
    assert "sk-not-stored" not in caplog.text and "sk-env-fallback" not in caplog.text
    vault.seal(False)
