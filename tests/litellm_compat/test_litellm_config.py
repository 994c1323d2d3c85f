"""LiteLLM drop-in (issue 10 items 1-7 and 11, issue 15's empty value and
YAML bounds): configs written the way LiteLLM's docs write them, run through
kms-host, asserting what the plugin receives (the `probe` plugin echoes its
settings) and the exact requests tests/vault_server logs. Each LiteLLM rule
cited is from LiteLLM's source: ProxyConfig._check_for_os_environ_vars,
_load_environment_variables, get_secret, KeyManagementSettings and
KeyManagementEventHooks."""

import json
import re

import pytest

from conftest import (EXIT_CONFIG, EXIT_FAIL, EXIT_OK, EXIT_USAGE, PROBE_DIR, Host, clean_env)

OPENAI = "sk-openai-from-vault-0123456789"


def vault_host(tmp_path, vault, text, **env):
    return Host(tmp_path, text, env=vault.env(**env))


def gets(vault):
    """Names read from Vault's KV (GET .../data/NAME), in order."""
    return [p[len("/v1/secret/data/"):] for m, p, _ in vault.kv_requests() if m == "GET"]


def lines_for(out, needle):
    return [line for line in out.splitlines() if needle in line]


# --- item 1: key_management_settings.tags (and any structured setting) ------------

TAGS_CONFIG = """\
    general_settings:
      key_management_system: probe
      key_management_settings:
        store_virtual_keys: true
        access_mode: write_only
        prefix_for_stored_virtual_keys: "litellm/"
        description: "Virtual key stored by LiteLLM"
        tags:
          Environment: Prod
          Owner: AI-Platform
          Count: 3
        hosted_keys: [OPENAI_API_KEY]
        extra_list: [a, "b c"]
    """


def test_tags_mapping_reaches_plugin_as_json(tmp_path):
    s = dict(Host(tmp_path, TAGS_CONFIG, plugin_dir=PROBE_DIR).settings())
    assert json.loads(s["tags"]) == {"Environment": "Prod", "Owner": "AI-Platform", "Count": "3"}
    assert s["tags"] == '{"Environment":"Prod","Owner":"AI-Platform","Count":"3"}'
    assert json.loads(s["extra_list"]) == ["a", "b c"]
    assert s["description"] == "Virtual key stored by LiteLLM"
    assert s["hosted_keys"] == "OPENAI_API_KEY"


def test_tags_flow_mapping_with_reference(tmp_path):
    text = """\
        general_settings:
          key_management_system: probe
          key_management_settings: {tags: {Team: os.environ/TEAM_TAG, "q\\"x": null}}
        """
    h = Host(tmp_path, text, plugin_dir=PROBE_DIR, env=clean_env(TEAM_TAG="ml"))
    assert dict(h.settings())["tags"] == '{"Team":"ml","q\\"x":null}'


def test_tags_accepted_by_vault_and_not_sent(tmp_path, vault):
    # The Vault plugin ignores tags: the config loads and the write body is
    # exactly LiteLLM's {"data": {"key": ..., "description": ...}} (the
    # description setting, issue 10 item 12; see test_vault_env.py).
    h = vault_host(tmp_path, vault, TAGS_CONFIG.replace("probe", "hashicorp_vault"))
    out = h.run("key", "generate", "--alias", "tagged", check=EXIT_OK).stdout
    key = re.search(r"key: (sk-\S+)", out).group(1)
    writes = [(m, p, b) for m, p, b in vault.kv_requests() if m in ("POST", "PUT")]
    assert writes == [("POST", "/v1/secret/data/litellm/tagged",
                       {"data": {"key": key, "description": "Virtual key stored by LiteLLM"}})]


# --- item 2: os.environ/ in every place LiteLLM resolves it ------------------------

EVERYWHERE = """\
    model_list:
      - model_name: gpt-4o
        litellm_params:
          model: openai/gpt-4o
          api_key: os.environ/OPENAI_API_KEY
          extra: {nested_key: os.environ/NESTED_PARAM}
        model_info: {id: os.environ/MODEL_INFO_ID}
    general_settings:
      key_management_system: hashicorp_vault
      master_key: os.environ/LITELLM_MASTER_KEY
      database_url: os.environ/DATABASE_URL
      alerting_args: {webhook: os.environ/ALERT_WEBHOOK}
    litellm_settings:
      cache_params: {type: redis, password: os.environ/REDIS_PASSWORD}
      success_callback: ["os.environ/NOT_A_REFERENCE_IN_A_LIST"]
    router_settings:
      redis_password: os.environ/ROUTER_REDIS_PASSWORD
    credential_list:
      - credential_name: azure
        credential_values: {api_key: os.environ/AZURE_API_KEY}
    guardrails:
      - guardrail_name: aporia
        litellm_params: {api_key: os.environ/APORIA_API_KEY}
    """

ROUTED = ["OPENAI_API_KEY", "NESTED_PARAM", "MODEL_INFO_ID", "LITELLM_MASTER_KEY", "DATABASE_URL",
          "ALERT_WEBHOOK", "REDIS_PASSWORD", "ROUTER_REDIS_PASSWORD", "AZURE_API_KEY",
          "APORIA_API_KEY"]


def test_every_reference_resolved_through_vault(tmp_path, vault):
    for i, name in enumerate(ROUTED):
        vault.write(name, {"key": f"value-of-{name.lower()}-{i:04d}"})
    vault.clear_log()
    p = vault_host(tmp_path, vault, EVERYWHERE).run("resolve", check=EXIT_OK)
    # every reference listed with where it is, each read once from Vault
    assert sorted(gets(vault)) == sorted(ROUTED)
    for where in ["general_settings.master_key", "general_settings.database_url",
                  "general_settings.alerting_args.webhook", "litellm_settings.cache_params.password",
                  "router_settings.redis_password", "credential_list[0].credential_values.api_key",
                  "guardrails[0].litellm_params.api_key", "model_list[0].litellm_params.extra.nested_key",
                  "model_list[0].model_info.id", "model_list[0] (gpt-4o) api_key"]:
        assert len(lines_for(p.stdout, where + ":")) == 1, (where, p.stdout)
    assert p.stdout.count("[hashicorp_vault]") == len(ROUTED)
    assert "NOT_A_REFERENCE_IN_A_LIST" not in p.stdout  # LiteLLM leaves strings in lists alone


def test_master_key_reference_is_checked(tmp_path):
    text = "general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n"
    p = Host(tmp_path, text).run("resolve", check=EXIT_FAIL)
    assert "general_settings.master_key: os.environ/LITELLM_MASTER_KEY -> ERROR: environment " \
           "variable LITELLM_MASTER_KEY is not set" in p.stdout
    ok = Host(tmp_path, text, env=clean_env(LITELLM_MASTER_KEY="sk-1234567890abcdef"))
    assert "-> sk-... (19 chars) [environment]" in ok.run("resolve", check=EXIT_OK).stdout


def test_key_management_settings_reference_resolved_from_environment(tmp_path):
    text = """\
        general_settings:
          key_management_system: probe
          key_management_settings:
            access_mode: os.environ/KMS_MODE
            prefix_for_stored_virtual_keys: os.environ/KMS_PREFIX
        """
    h = Host(tmp_path, text, plugin_dir=PROBE_DIR, env=clean_env(KMS_MODE="read_and_write",
                                                                  KMS_PREFIX="team-a"))
    s = dict(h.settings())
    assert s["access_mode"] == "read_and_write" and s["prefix_for_stored_virtual_keys"] == "team-a"
    p = h.run("resolve", check=EXIT_OK)
    assert "general_settings.key_management_settings.access_mode: os.environ/KMS_MODE -> " \
           "rea... (14 chars) [environment, at load]" in p.stdout
    bad = Host(tmp_path, text, plugin_dir=PROBE_DIR, env=clean_env(KMS_PREFIX="x"))
    err = bad.run("resolve", check=EXIT_CONFIG).stderr
    assert "key_management_settings.access_mode: os.environ/KMS_MODE: environment variable " \
           "'KMS_MODE' is not set" in err


# --- item 3: environment_variables --------------------------------------------------

def test_environment_variables_configure_the_plugin(tmp_path, vault, certs):
    # Only the config carries the Vault connection (LiteLLM users put HCP_VAULT_* there).
    vault.write("OPENAI_API_KEY", {"key": OPENAI})
    text = f"""\
        environment_variables:
          HCP_VAULT_ADDR: {vault.url}
          HCP_VAULT_TOKEN: os.environ/MY_TOKEN
          VAULT_CACERT: {certs / "ca.pem"}
          VAULT_MAX_RETRIES: 0
          SOME_FLAG: true
        model_list:
          - model_name: gpt-4o
            litellm_params: {{model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY}}
          - model_name: flag
            litellm_params: {{model: x/y, api_base: os.environ/SOME_FLAG}}
        general_settings:
          key_management_system: hashicorp_vault
          key_management_settings: {{hosted_keys: [OPENAI_API_KEY]}}
        """
    h = Host(tmp_path, text, env=clean_env(MY_TOKEN="root"))
    vault.clear_log()
    p = h.run("resolve", check=EXIT_OK)
    assert gets(vault) == ["OPENAI_API_KEY"]
    assert f"api_key: os.environ/OPENAI_API_KEY -> sk-... ({len(OPENAI)} chars) [hashicorp_vault]" in p.stdout
    # str(True) is what LiteLLM exports for a YAML true
    assert "api_base: os.environ/SOME_FLAG -> ****** (4 chars) [environment]" in p.stdout
    assert "environment_variables.HCP_VAULT_TOKEN: os.environ/MY_TOKEN -> ****** (4 chars) " \
           "[environment, at load]" in p.stdout


def test_environment_variables_bad_entries(tmp_path):
    for body, needle in [("environment_variables: [A]\n", "expected a mapping"),
                         ("environment_variables:\n  A:\n", "has no value"),
                         ("environment_variables:\n  A: {b: 1}\n", "expected a scalar"),
                         ("environment_variables:\n  A: os.environ/UNSET_X\n",
                          "environment variable 'UNSET_X' is not set")]:
        p = Host(tmp_path, body).run("resolve", check=EXIT_CONFIG)
        assert "environment_variables" in p.stderr and needle in p.stderr, p.stderr


# --- item 4: merge keys, anchors, flow mappings, CRLF --------------------------------

MERGED = """\
    x-defaults: &defaults
      model: openai/gpt-4o
      api_key: os.environ/BASE_KEY
      api_base: os.environ/BASE_URL
    x-kms: &kms
      store_virtual_keys: true
      access_mode: read_only
    x-more: &more {delete_mode: destroy, access_mode: write_only}
    model_list:
      - model_name: a
        litellm_params:
          <<: *defaults
          api_key: os.environ/A_KEY
      - model_name: b
        litellm_params: {<<: *defaults}
    general_settings:
      key_management_system: probe
      key_management_settings:
        <<: [*more, *kms]
        prefix_for_stored_virtual_keys: merged
    """


def test_merge_keys_apply_with_pyyaml_semantics(tmp_path):
    h = Host(tmp_path, MERGED, plugin_dir=PROBE_DIR,
             env=clean_env(A_KEY="a-key-value-123456", BASE_KEY="base-key-value-1234",
                           BASE_URL="https://base.example"))
    # [*more, *kms]: the earlier mapping wins (write_only), own keys win over both
    s = dict(h.settings())
    assert s == {"delete_mode": "destroy", "access_mode": "write_only",
                 "store_virtual_keys": "true", "prefix_for_stored_virtual_keys": "merged"}
    p = h.run("resolve", check=EXIT_OK)
    assert "model_list[0] (a) api_key: os.environ/A_KEY -> a-k... (18 chars)" in p.stdout
    assert "model_list[0] (a) api_base: os.environ/BASE_URL" in p.stdout
    assert "model_list[1] (b) api_key: os.environ/BASE_KEY -> bas..." in p.stdout
    assert "BASE_KEY" not in "".join(lines_for(p.stdout, "model_list[0] (a)"))


def test_merge_key_errors(tmp_path):
    for body, needle in [("general_settings:\n  <<: 5\n", "merge key"),
                         ("general_settings:\n  <<: [1]\n", "must be mappings"),
                         ("a: &a\n  <<: *a\n", "deeper")]:
        p = Host(tmp_path, body).run("resolve", check=EXIT_CONFIG)
        assert needle in p.stderr, p.stderr


def test_crlf_anchor_flow_config(tmp_path, vault):
    vault.write("OPENAI_API_KEY", {"key": OPENAI})
    text = ("general_settings: {key_management_system: hashicorp_vault}\n"
            "model_list:\n"
            "  - &m {model_name: one, litellm_params: {api_key: \"os.environ/OPENAI_API_KEY\"}}\n"
            "  - *m\n")
    h = Host(tmp_path, text, env=vault.env(), crlf=True)
    vault.clear_log()
    p = h.run("resolve", check=EXIT_OK)
    assert p.stdout.count(f"-> sk-... ({len(OPENAI)} chars) [hashicorp_vault]") == 2
    assert "model_list[1] (one) api_key" in p.stdout
    assert gets(vault) == ["OPENAI_API_KEY", "OPENAI_API_KEY"]  # refresh interval 0: no cache


# --- item 5: store_virtual_keys without access_mode ---------------------------------

STORE = """\
    general_settings:
      key_management_system: hashicorp_vault
      key_management_settings:
        store_virtual_keys: true
    """


def test_store_without_access_mode_writes_like_litellm(tmp_path, vault):
    h = vault_host(tmp_path, vault, STORE)
    vault.clear_log()
    p = h.run("key", "generate", "--alias", "k1", check=EXIT_OK)
    key = re.search(r"key: (sk-\S+)", p.stdout).group(1)
    assert p.stderr.count("access_mode is not set") == 1
    assert vault.kv_requests() == [("POST", "/v1/secret/data/litellm/k1", {"data": {"key": key}})]
    vault.clear_log()
    h.run("key", "delete", "--alias", "k1", check=EXIT_OK)
    assert vault.kv_requests() == [("DELETE", "/v1/secret/data/litellm/k1", None)]
    # and the plugin was handed the mode LiteLLM effectively runs with
    probe = Host(tmp_path, STORE.replace("hashicorp_vault", "probe"), plugin_dir=PROBE_DIR)
    assert ("access_mode", "read_and_write") in probe.settings()


def test_store_with_explicit_read_only_is_a_config_error(tmp_path, vault):
    h = vault_host(tmp_path, vault, STORE + "    access_mode: read_only\n")
    vault.clear_log()
    err = h.run("key", "generate", "--alias", "k1", check=EXIT_CONFIG).stderr
    assert "store_virtual_keys" in err and "access_mode: write_only or read_and_write (it is " \
           "read_only)" in err
    assert vault.kv_requests() == []


# --- item 6: fallback to the environment, and hosted_keys -----------------------------

FALLBACK = """\
    model_list:
      - model_name: gpt-4o
        litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY}
    general_settings:
      key_management_system: hashicorp_vault
    """


def test_not_found_falls_back_to_environment_loudly(tmp_path, vault):
    h = vault_host(tmp_path, vault, FALLBACK, OPENAI_API_KEY="sk-env-fallback-value-123")
    p = h.run("resolve", check=EXIT_OK)
    assert "-> sk-... (25 chars) [environment, fallback from hashicorp_vault]" in p.stdout
    warn = lines_for(p.stderr, "warning:")
    assert len(warn) == 1 and "model_list[0].litellm_params.api_key" in warn[0]
    assert "NOT_FOUND" in warn[0] and "using environment variable OPENAI_API_KEY" in warn[0]
    assert "sk-env-fallback" not in p.stderr + p.stdout


def test_backend_down_falls_back_unless_limited(tmp_path, vault):
    vault.write("OPENAI_API_KEY", {"key": OPENAI})
    vault.seal()
    h = vault_host(tmp_path, vault, FALLBACK, OPENAI_API_KEY="sk-env-fallback-value-123")
    p = h.run("resolve", check=EXIT_OK)
    assert "[environment, fallback from hashicorp_vault]" in p.stdout and "UNAVAILABLE" in p.stderr
    strict = FALLBACK + "  kms_env_fallback: not_found\n"
    p = vault_host(tmp_path, vault, strict, OPENAI_API_KEY="x" * 20).run("resolve", check=EXIT_FAIL)
    assert "ERROR: via hashicorp_vault:" in p.stdout and "[kms_env_fallback: not_found]" in p.stdout


def test_fallback_off_is_strict(tmp_path, vault):
    h = vault_host(tmp_path, vault, FALLBACK + "  kms_env_fallback: off\n",
                   OPENAI_API_KEY="sk-env-fallback-value-123")
    p = h.run("resolve", check=EXIT_FAIL)
    assert "ERROR: via hashicorp_vault:" in p.stdout and "NOT_FOUND" in p.stdout
    assert "[kms_env_fallback: off]" in p.stdout
    bad = vault_host(tmp_path, vault, FALLBACK + "  kms_env_fallback: sometimes\n")
    assert "kms_env_fallback" in bad.run("resolve", check=EXIT_CONFIG).stderr


def test_hosted_keys_decide_what_vault_sees(tmp_path, vault):
    vault.write("OPENAI_API_KEY", {"key": OPENAI})
    text = """\
        model_list:
          - model_name: m
            litellm_params: {api_key: os.environ/OPENAI_API_KEY, api_base: os.environ/API_BASE}
        general_settings:
          key_management_system: hashicorp_vault
          key_management_settings: {hosted_keys: [OPENAI_API_KEY]}
        """
    vault.clear_log()
    p = vault_host(tmp_path, vault, text, API_BASE="http://localhost:4000").run("resolve",
                                                                                check=EXIT_OK)
    assert gets(vault) == ["OPENAI_API_KEY"]
    assert "api_base: os.environ/API_BASE -> htt... (21 chars) [environment]" in p.stdout
    # hosted_keys: [] -- nothing goes to the manager at all
    vault.clear_log()
    vault_host(tmp_path, vault, text.replace("[OPENAI_API_KEY]", "[]"),
               API_BASE="x" * 12, OPENAI_API_KEY="y" * 12).run("resolve", check=EXIT_OK)
    assert gets(vault) == []


# --- item 7: backend names LiteLLM users write ----------------------------------------

def test_local_is_the_environment_backend(tmp_path):
    text = """\
        model_list:
          - model_name: m
            litellm_params: {api_key: os.environ/OPENAI_API_KEY}
        general_settings: {key_management_system: local}
        """
    h = Host(tmp_path, text, env=clean_env(OPENAI_API_KEY="sk-local-backend-value"))
    assert "-> sk-... (22 chars) [env]" in h.run("resolve", check=EXIT_OK).stdout
    assert re.search(r"^\* env ", h.run("plugins", check=EXIT_OK).stdout, re.M)


def test_unshipped_litellm_backend_lists_installed(tmp_path):
    # LiteLLM's azure_key_vault: a backend LiteLLM has and kmsplug does not ship (yet).
    h = Host(tmp_path, "general_settings: {key_management_system: azure_key_vault}\n")
    err = h.run("resolve", check=EXIT_CONFIG).stderr
    assert "unknown plugin 'azure_key_vault'" in err
    for name in ("aws_secret_manager", "docker", "env", "hashicorp_vault"):
        assert name in err.split("plugins found in")[1]


# --- item 11: aliases with '/' -------------------------------------------------------

def test_alias_with_segments_is_stored_under_prefix(tmp_path, vault):
    h = vault_host(tmp_path, vault, STORE + "    access_mode: read_and_write\n")
    vault.clear_log()
    p = h.run("key", "generate", "--alias", "tenant-a/gateway-key", check=EXIT_OK)
    key = re.search(r"key: (sk-\S+)", p.stdout).group(1)
    assert vault.kv_requests() == [("POST", "/v1/secret/data/litellm/tenant-a/gateway-key",
                                    {"data": {"key": key}})]
    assert vault.read("litellm/tenant-a/gateway-key") == {"key": key}


@pytest.mark.parametrize("alias", ["a//b", "a/../b", "a/./b", "/a", "a/", "a/.b", "a/\x01b",
                                   "a/" + "b" * 127],
                         ids=["empty", "dotdot", "dot", "leading", "trailing", "dotstart", "ctrl",
                              "too-long"])
def test_alias_bad_segments_refused(tmp_path, alias):
    p = Host(tmp_path, "general_settings: {}\n").run("key", "generate", "--alias", alias,
                                                        check=EXIT_USAGE)
    assert "not valid" in p.stderr and "segments" in p.stderr


# --- issue 15: empty values, NUL, depth -------------------------------------------------

def test_empty_value_is_not_resolved(tmp_path, vault):
    vault.write("OPENAI_API_KEY", {"key": ""})
    h = vault_host(tmp_path, vault, FALLBACK + "  kms_env_fallback: off\n")
    p = h.run("resolve", check=EXIT_FAIL)
    assert "ERROR: via hashicorp_vault: the stored value is empty" in p.stdout
    # the default falls back, and an empty environment variable is no value either
    p = vault_host(tmp_path, vault, FALLBACK, OPENAI_API_KEY="").run("resolve", check=EXIT_FAIL)
    assert "environment variable OPENAI_API_KEY is set but empty" in p.stdout


def test_nul_in_scalar_or_key_is_an_error(tmp_path):
    for body in ['model_list:\n  - litellm_params: {api_key: "os.environ/A\\0B"}\n',
                 'general_settings:\n  "key_management_system\\0x": env\n']:
        p = Host(tmp_path, body, env=clean_env(A="v" * 12)).run("resolve", check=EXIT_CONFIG)
        assert "NUL" in p.stderr, p.stderr


@pytest.mark.parametrize("body", ["x: " + "[" * 200000 + "]" * 200000 + "\n",
                                  "x: " + "{a: " * 200000 + "1" + "}" * 200000 + "\n",
                                  "x:\n" + "".join("  " * i + "k:\n" for i in range(1, 3000))],
                         ids=["flow-lists", "flow-maps", "block-maps"])
def test_deep_nesting_fails_fast(tmp_path, body):
    # before: libyaml took minutes on 200000 levels (the subprocess timeout is the hang check)
    p = Host(tmp_path, body).run("resolve", check=EXIT_CONFIG)
    assert "nested deeper than 100 levels" in p.stderr
