"""kms-host end to end with the `env` backend (read-only): command line,
config errors, plugin directory and database precedence, LiteLLM's
os.environ/ resolution (hosted_keys, access_mode), and virtual keys without
store_virtual_keys."""

import hashlib
import os
import re
import stat
import textwrap

import pytest

from kms_host_helpers import (EXIT_CONFIG, EXIT_FAIL, EXIT_OK, EXIT_USAGE, PLUGIN_DIR, STORE,
                              Host, base_env, key_rows, parse_fields, run_raw)

SECRET = "sk-live-0123456789abcdefSECRETSECRET"


def write(tmp_path, body, name="config.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


ENV_CONFIG = """\
    model_list:
      - model_name: gpt-4o
        litellm_params:
          model: openai/gpt-4o
          api_key: os.environ/OPENAI_API_KEY
      - model_name: claude
        litellm_params:
          model: anthropic/claude
          api_key: "os.environ/ANTHROPIC_API_KEY"
          rpm: 100
    general_settings:
      key_management_system: env
      key_management_settings:
        prefix: KMS_
    """


@pytest.fixture
def env_host(tmp_path):
    return Host(write(tmp_path, ENV_CONFIG),
                env=base_env(KMS_OPENAI_API_KEY=SECRET, KMS_ANTHROPIC_API_KEY="short"))


# --- command line ----------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--help"], ["help"], ["plugins", "--help"], ["secret", "--help"], ["secret", "get", "--help"],
    ["resolve", "--help"], ["key", "--help"], ["key", "generate", "--help"],
    ["key", "delete", "--help"], ["key", "regenerate", "--help"], ["key", "list", "--help"],
    ["sync", "--help"], ["refresh", "--help"]])
def test_help_everywhere(args):
    p = run_raw(*args)
    assert p.returncode == EXIT_OK, p.stderr
    assert p.stdout.startswith("usage: kms-host")


@pytest.mark.parametrize("args,msg", [
    ([], "usage"), (["frobnicate"], "unknown command"), (["resolve"], "needs --config"),
    (["--config"], "needs a value"), (["--bogus", "plugins"], "unknown option")])
def test_usage_errors(args, msg):
    p = run_raw(*args)
    assert p.returncode == EXIT_USAGE
    assert msg in p.stderr


def test_usage_errors_with_config(env_host):
    assert "exactly one NAME" in env_host.run("secret", "get", check=EXIT_USAGE).stderr
    assert "unknown secret command" in env_host.run("secret", "list", check=EXIT_USAGE).stderr
    assert "exactly one of --alias or --key" in env_host.run("key", "delete",
                                                             check=EXIT_USAGE).stderr
    env_host.run("key", "delete", "--alias", "a", "--key", "sk-x", check=EXIT_USAGE)
    env_host.run("key", "generate", "--key", "sk-x", check=EXIT_USAGE)
    env_host.run("resolve", "extra", check=EXIT_USAGE)


# --- plugins and plugin directory --------------------------------------------

def test_plugins_lists_env(env_host):
    p = env_host.run("plugins", check=EXIT_OK)
    line = next(l for l in p.stdout.splitlines() if " env " in l)
    assert line.startswith("*")  # the configured one
    assert re.search(r"\benv\s+1\.\d+\.\d+\s+1\.1\s+read,refresh,thread-safe,list", line), line
    assert "configured: env" in p.stdout


def test_plugins_without_config():
    p = run_raw("--plugin-dir", str(PLUGIN_DIR), "plugins")
    assert p.returncode == EXIT_OK and " env " in p.stdout


def test_unknown_plugin_lists_found(tmp_path):
    cfg = write(tmp_path, """\
        general_settings:
          key_management_system: azure_key_vault
        model_list:
          - model_name: m
            litellm_params: {api_key: os.environ/X}
        """)
    p = Host(cfg).run("resolve", check=EXIT_CONFIG)
    assert "config.yaml:2" in p.stderr
    assert "unknown plugin 'azure_key_vault'" in p.stderr
    assert re.search(r"plugins found in .*: .*\benv\b", p.stderr), p.stderr
    assert Host(cfg).run("plugins").returncode == EXIT_CONFIG


def test_unknown_plugin_fails_even_with_nothing_to_resolve(tmp_path):
    cfg = write(tmp_path, """\
        general_settings:
          key_management_system: hashicorp_vualt
        """)
    p = Host(cfg).run("resolve", check=EXIT_CONFIG)
    assert "unknown plugin 'hashicorp_vualt'" in p.stderr
    assert "hashicorp_vault" in p.stderr  # the plugins found are listed


def test_plugin_dir_precedence(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    cfg = write(tmp_path, f"""\
        general_settings:
          key_management_system: env
          plugin_dir: {empty}
        """)
    # config's plugin_dir wins over KMS_PLUGIN_PATH ...
    h = Host(cfg, plugin_dir=None, env=base_env(KMS_PLUGIN_PATH=PLUGIN_DIR))
    assert "(no plugins)" in h.run("plugins", check=EXIT_CONFIG).stdout
    # ... and --plugin-dir wins over the config
    assert " env " in Host(cfg).run("plugins", check=EXIT_OK).stdout
    # KMS_PLUGIN_PATH is used when neither says
    cfg2 = write(tmp_path, "general_settings: {key_management_system: env}\n", "c2.yaml")
    h2 = Host(cfg2, plugin_dir=None, env=base_env(KMS_PLUGIN_PATH=PLUGIN_DIR))
    assert h2.run("plugins", check=EXIT_OK).stdout.startswith(f"plugin directory: {PLUGIN_DIR}")
    # a relative plugin_dir is relative to the config file
    rel = os.path.relpath(PLUGIN_DIR, tmp_path)
    cfg3 = write(tmp_path, f"general_settings: {{key_management_system: env, plugin_dir: {rel}}}\n",
                 "c3.yaml")
    assert " env " in Host(cfg3, plugin_dir=None).run("plugins", check=EXIT_OK).stdout


# --- config errors ---------------------------------------------------------------

def _alias_bomb(n_params, n_aliases, value):
    """One model with n_params params, listed n_aliases times through a YAML alias."""
    params = "\n".join(f"    p{i}: {value}{i}" for i in range(n_params))
    return ("x: &m\n  model_name: m\n  litellm_params:\n" + params + "\n"
            "model_list: [" + ", ".join(["*m"] * n_aliases) + "]\n")


@pytest.mark.parametrize("value,needle", [
    ("os.environ/K", "more than 100000 os.environ/ references"),
    ("plain", "too large once YAML aliases are expanded"),
])
def test_alias_expansion_is_bounded(tmp_path, value, needle):
    # 2,000 params x 20,000 aliases: refused with a clear error instead of
    # hanging or eating memory (the subprocess timeout in Host.run is the hang check)
    p = Host(write(tmp_path, _alias_bomb(2000, 20000, value))).run("resolve", check=EXIT_CONFIG)
    assert needle in p.stderr, p.stderr


@pytest.mark.parametrize("body,needles", [
    ("general_settings:\n  key_management_settings:\n    store_virtual_keys: perhaps\n",
     ["config.yaml:3", "store_virtual_keys", "true or false"]),
    ("general_settings:\n  key_management_settings:\n    access_mode: everything\n",
     ["config.yaml:3", "access_mode"]),
    ("general_settings:\n  key_management_settings:\n    hosted_keys: OPENAI_API_KEY\n",
     ["config.yaml:3", "hosted_keys", "list"]),
    ("model_list:\n  model_name: x\n", ["config.yaml:2", "model_list", "list"]),
    ("general_settings: [a]\n", ["config.yaml:1", "general_settings"]),
    ("general_settings:\n  key_management_system: env\n  key_management_system: env\n",
     ["config.yaml:3", "duplicate"]),
    ("general_settings:\n  key_management_system: 'has space'\n", ["config.yaml:2",
                                                                   "not a plugin name"]),
    ("model_list: [\n", ["YAML syntax error"]),
    ("", ["empty"]),
    ("general_settings:\n  key_management_settings:\n    access_mode: read_only\n"
     "    store_virtual_keys: false\n    access_mode: read_and_write\n",
     ["config.yaml:5", "key_management_settings.access_mode", "duplicate key (first at line 3)"]),
    ("model_list:\n  - model_name: m\n    litellm_params:\n      api_key: os.environ/A\n"
     "      api_key: os.environ/B\n",
     ["config.yaml:5", "litellm_params.api_key", "duplicate key (first at line 4)"]),
])
def test_config_errors(tmp_path, body, needles):
    p = Host(write(tmp_path, body)).run("resolve", check=EXIT_CONFIG)
    for n in needles:
        assert n in p.stderr, p.stderr


def test_missing_config(tmp_path):
    p = Host(tmp_path / "nope.yaml").run("resolve", check=EXIT_CONFIG)
    assert "cannot open config" in p.stderr


def test_unknown_keys_ignored(tmp_path):
    cfg = write(tmp_path, """\
        litellm_settings: {drop_params: true, callbacks: [a, b]}
        router_settings: {routing_strategy: simple-shuffle}
        environment_variables: {FOO: bar}
        general_settings:
          master_key: sk-1234
          database_url: postgres://x
          key_management_system: env
        model_list:
          - model_name: m
            litellm_params: {model: x, api_key: os.environ/K, extra: {deep: [1]}}
            model_info: {id: 1}
        """)
    p = Host(cfg, env=base_env(K="value-of-k-long-enough")).run("resolve", check=EXIT_OK)
    assert "os.environ/K -> val... (22 chars) [env]" in p.stdout


def test_plugin_setting_error_is_reported(tmp_path):
    cfg = write(tmp_path, """\
        general_settings:
          key_management_system: env
          key_management_settings: {prefix: "bad prefix"}
        model_list: [{model_name: m, litellm_params: {api_key: os.environ/K}}]
        """)
    p = Host(cfg).run("resolve", check=EXIT_CONFIG)
    assert "refused the configuration" in p.stderr and "prefix" in p.stderr


# --- resolve ---------------------------------------------------------------------

def test_resolve_through_plugin_redacted(env_host):
    p = env_host.run("resolve", check=EXIT_OK)
    out = p.stdout + p.stderr
    assert SECRET not in out and SECRET[3:] not in out
    assert "os.environ/OPENAI_API_KEY -> sk-... (36 chars) [env]" in p.stdout
    assert "os.environ/ANTHROPIC_API_KEY -> ****** (5 chars) [env]" in p.stdout
    assert "config.yaml:5 model_list[0] (gpt-4o) api_key" in p.stdout


def test_resolve_unresolvable_is_error(tmp_path):
    # kms_env_fallback: off -- the plugin's answer is final (LiteLLM's default,
    # falling back to the environment, is covered in tests/litellm_compat).
    cfg = write(tmp_path, ENV_CONFIG.replace("key_management_system: env\n",
                                             "key_management_system: env\n"
                                             "      kms_env_fallback: \"off\"\n"))
    h = Host(cfg, env=base_env(KMS_OPENAI_API_KEY=SECRET, ANTHROPIC_API_KEY="not-via-plugin"))
    p = h.run("resolve", check=EXIT_FAIL)
    assert "os.environ/ANTHROPIC_API_KEY -> ERROR: via env" in p.stdout
    assert "KMS_ANTHROPIC_API_KEY is not set" in p.stdout
    assert "sk-... (36 chars)" in p.stdout  # the others still shown


def test_resolve_falls_back_to_environment_with_a_warning(tmp_path):
    h = Host(write(tmp_path, ENV_CONFIG), env=base_env(KMS_OPENAI_API_KEY=SECRET,
                                                        ANTHROPIC_API_KEY="not-via-plugin"))
    p = h.run("resolve", check=EXIT_OK)
    assert "os.environ/ANTHROPIC_API_KEY -> not... (14 chars)" in p.stdout
    assert "ANTHROPIC_API_KEY" in p.stderr and "not-via-plugin" not in p.stderr


def test_resolve_hosted_keys(tmp_path):
    # Only OPENAI_API_KEY goes through the plugin (which reads KMS_<name>);
    # ANTHROPIC_API_KEY comes straight from the environment.
    cfg = write(tmp_path, ENV_CONFIG + "    hosted_keys: [OPENAI_API_KEY]\n")
    h = Host(cfg, env=base_env(KMS_OPENAI_API_KEY=SECRET, ANTHROPIC_API_KEY="anthropic-from-env",
                               OPENAI_API_KEY="WRONG-not-hosted-path"))
    p = h.run("resolve", check=EXIT_OK)
    assert "os.environ/OPENAI_API_KEY -> sk-... (36 chars) [env]" in p.stdout
    assert "os.environ/ANTHROPIC_API_KEY -> ant... (18 chars) [environment]" in p.stdout


def test_resolve_write_only_reads_environment(tmp_path):
    cfg = write(tmp_path, ENV_CONFIG + "    access_mode: write_only\n")
    h = Host(cfg, env=base_env(OPENAI_API_KEY="openai-from-environment",
                               ANTHROPIC_API_KEY="anthropic-from-environment"))
    p = h.run("resolve", check=EXIT_OK)
    assert p.stdout.count("[environment]") == 2


def test_resolve_without_kms_uses_environment(tmp_path):
    cfg = write(tmp_path, "model_list:\n  - model_name: m\n    litellm_params:\n"
                          "      api_key: os.environ/ONLY_ENV\n")
    assert "[environment]" in Host(cfg, env=base_env(ONLY_ENV="x" * 40)).run(
        "resolve", check=EXIT_OK).stdout
    p = Host(cfg).run("resolve", check=EXIT_FAIL)
    assert "ONLY_ENV is not set" in p.stdout


def test_resolve_litellm_reference_rule(tmp_path):
    cfg = write(tmp_path, """\
        model_list:
          - model_name: m
            litellm_params:
              a: os.environ/os.environ/DOUBLE
              b: " os.environ/NOT_A_REF"
              c: https://example.com/os.environ/NOT_A_REF
              d: os.environ/
              e: 42
        """)
    p = Host(cfg, env=base_env(DOUBLE="double-marker-value")).run("resolve", check=EXIT_FAIL)
    assert "os.environ/os.environ/DOUBLE -> dou... (19 chars) [environment]" in p.stdout
    assert "NOT_A_REF" not in p.stdout
    assert "os.environ/ -> ERROR: empty secret name" in p.stdout


# --- secret ---------------------------------------------------------------------

def test_secret_get(env_host):
    assert env_host.run("secret", "get", "OPENAI_API_KEY", check=EXIT_OK).stdout == SECRET + "\n"
    p = env_host.run("secret", "get", "NOT_THERE", check=EXIT_FAIL)
    assert "NOT_FOUND" in p.stderr


def test_secret_put_delete_unsupported_by_env(env_host):
    p = env_host.run("secret", "put", "X", input="value\n", check=EXIT_FAIL)
    assert "UNSUPPORTED" in p.stderr and "value" not in p.stderr.replace("value for", "")
    assert "UNSUPPORTED" in env_host.run("secret", "delete", "X", check=EXIT_FAIL).stderr


def test_secret_put_empty_refused(env_host):
    p = env_host.run("secret", "put", "X", input="\n", check=EXIT_FAIL)
    assert "empty" in p.stderr


def test_refresh(env_host):
    assert "refreshed: env" in env_host.run("refresh", check=EXIT_OK).stdout


def test_secret_needs_kms(tmp_path):
    p = Host(write(tmp_path, "general_settings: {}\n")).run("secret", "get", "X",
                                                               check=EXIT_CONFIG)
    assert "key_management_system is not set" in p.stderr


# --- virtual keys without storage -------------------------------------------------

def db_rows(path):
    return [tuple(r) for r in key_rows(path)]


def test_keys_local_only(env_host, tmp_path):
    h = env_host
    g = parse_fields(h.run("key", "generate", "--alias", "team-a", check=EXIT_OK).stdout)
    key = g["key"]
    assert re.fullmatch(r"sk-[A-Za-z0-9_-]{32}", key)
    assert g["secret_name"].startswith("-")
    db = tmp_path / "kms-host.db"  # default: next to the config (or DATABASE_URL)
    rows = db_rows(db)
    assert rows == [(g["key_id"], hashlib.sha256(key.encode()).hexdigest(), "team-a", None)]
    if STORE == "sqlite":
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        assert key not in db.read_bytes().decode("latin-1")  # only the hash is kept
    else:
        assert not db.exists()

    g2 = parse_fields(h.run("key", "generate", check=EXIT_OK).stdout)
    assert g2["key"] != key and g2["alias"] == "-"

    lst = h.run("key", "list", check=EXIT_OK).stdout
    assert "team-a" in lst and g2["key_id"] in lst
    assert key not in lst and g2["key"] not in lst

    # duplicate alias refused, nothing changed
    p = h.run("key", "generate", "--alias", "team-a", check=EXIT_FAIL)
    assert "already used" in p.stderr
    assert len(db_rows(db)) == 2

    # regenerate by key: same id and alias, new value
    r = parse_fields(h.run("key", "regenerate", "--key", key, check=EXIT_OK).stdout)
    assert r["key_id"] == g["key_id"] and r["key"] != key
    assert "no such virtual key" in h.run("key", "delete", "--key", key, check=EXIT_FAIL).stderr
    by_id = {row[0]: row for row in db_rows(db)}
    assert by_id[g["key_id"]][1] == hashlib.sha256(r["key"].encode()).hexdigest()

    # delete by alias and by key
    assert parse_fields(h.run("key", "delete", "--alias", "team-a",
                              check=EXIT_OK).stdout)["deleted"] == g["key_id"]
    h.run("key", "delete", "--key", g2["key"], check=EXIT_OK)
    assert db_rows(db) == []
    assert "no virtual key with alias" in h.run("key", "delete", "--alias", "team-a",
                                                check=EXIT_FAIL).stderr
    # the key itself never reaches stderr
    assert key not in h.run("key", "list").stderr


@pytest.mark.parametrize("alias", ["../etc", "a//b", "a/./b", "-x", "", "x" * 129, "a b", "é"])
def test_bad_alias(env_host, alias):
    p = env_host.run("key", "generate", "--alias", alias, check=EXIT_USAGE)
    assert "not valid" in p.stderr


def test_bad_key_argument(env_host):
    env_host.run("key", "generate", check=EXIT_OK)
    assert "expects a virtual key" in env_host.run("key", "delete", "--key", "hello",
                                                   check=EXIT_FAIL).stderr


def test_db_path_options(tmp_path):
    cfg = write(tmp_path, "general_settings:\n  kms_db_path: sub/keys.db\n")
    (tmp_path / "sub").mkdir()
    Host(cfg).run("key", "generate", check=EXIT_OK)  # kms_db_path, relative to the config
    assert len(db_rows(tmp_path / "sub" / "keys.db")) == 1
    other = tmp_path / "other.db"
    Host(cfg).run("--db", str(other), "key", "generate", check=EXIT_OK)  # --db wins
    assert len(db_rows(other)) == 1 and len(db_rows(tmp_path / "sub" / "keys.db")) == 1
    assert not (tmp_path / "kms-host.db").exists()


def test_database_url_must_be_a_string(tmp_path):
    cfg = write(tmp_path, "general_settings:\n  database_url: [postgresql://x]\n")
    p = Host(cfg).run("key", "list", check=EXIT_CONFIG)
    assert "general_settings.database_url: expected a PostgreSQL URL, got a list" in p.stderr


def test_store_with_read_only_backend_refused(tmp_path):
    cfg = write(tmp_path, """\
        general_settings:
          key_management_system: env
          key_management_settings: {store_virtual_keys: true, access_mode: read_and_write}
        """)
    p = Host(cfg).run("key", "generate", "--alias", "a", check=EXIT_CONFIG)
    assert "cannot write secrets" in p.stderr
    assert db_rows(tmp_path / "kms-host.db") == []


def test_store_needs_write_access_mode(tmp_path):
    # An explicit read_only contradicts store_virtual_keys: a config error.
    cfg = write(tmp_path, "general_settings:\n  key_management_system: env\n"
                          "  key_management_settings:\n    store_virtual_keys: true\n"
                          "    access_mode: read_only\n")
    p = Host(cfg).run("key", "generate", check=EXIT_CONFIG)
    assert "access_mode: write_only or read_and_write" in p.stderr


def test_store_needs_kms(tmp_path):
    cfg = write(tmp_path, "general_settings:\n  key_management_settings:\n"
                          "    store_virtual_keys: true\n")
    assert "key_management_system is not set" in Host(cfg).run("key", "generate",
                                                                check=EXIT_CONFIG).stderr
