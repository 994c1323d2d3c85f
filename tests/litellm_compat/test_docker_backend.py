"""The `docker` backend (LiteLLM's DockerSecretManager): secrets are files
under secrets_path (default /run/secrets) as Docker and Kubernetes mount
them. Exact name first, then the lower-case name; surrounding whitespace
stripped; names that are not plain file names, and files resolving outside
the directory, refused; read-only like env."""

import os

import pytest

from conftest import EXIT_CONFIG, EXIT_FAIL, EXIT_OK, Host, clean_env


def docker_host(tmp_path, secrets, extra=""):
    text = f"""\
        model_list:
          - model_name: m
            litellm_params: {{api_key: os.environ/OPENAI_API_KEY}}
        general_settings:
          key_management_system: docker
          kms_env_fallback: off
          key_management_settings:
            secrets_path: {secrets}
        {extra}"""
    return Host(tmp_path, text)


@pytest.fixture
def secrets(tmp_path):
    d = tmp_path / "run-secrets"
    d.mkdir()
    (d / "openai_api_key").write_text("sk-docker-lower-0123456789\n")
    (d / "UPPER_SECRET").write_text("upper-value")
    (d / "padded").write_text("  \tpadded-value-123 \r\n\n")
    (d / "multi").write_text("line1\nline2\n")
    (d / "empty").write_text(" \n")
    return d


def get(h, name, check):
    return h.run("secret", "get", name, check=check)


def test_reads_exact_then_lowercase(tmp_path, secrets):
    h = docker_host(tmp_path, secrets)
    assert get(h, "UPPER_SECRET", EXIT_OK).stdout == "upper-value\n"
    assert get(h, "openai_api_key", EXIT_OK).stdout == "sk-docker-lower-0123456789\n"
    # OPENAI_API_KEY has no file; openai_api_key does (LiteLLM's second candidate)
    assert get(h, "OPENAI_API_KEY", EXIT_OK).stdout == "sk-docker-lower-0123456789\n"
    p = h.run("resolve", check=EXIT_OK)
    assert "api_key: os.environ/OPENAI_API_KEY -> sk-... (26 chars) [docker]" in p.stdout


def test_whitespace_stripped_inner_kept(tmp_path, secrets):
    h = docker_host(tmp_path, secrets)
    assert get(h, "padded", EXIT_OK).stdout == "padded-value-123\n"
    assert get(h, "multi", EXIT_OK).stdout == "line1\nline2\n"


def test_missing_and_empty_are_not_found(tmp_path, secrets):
    h = docker_host(tmp_path, secrets)
    p = get(h, "NOPE", EXIT_FAIL)
    assert "no file NOPE (or nope)" in p.stderr and "NOT_FOUND" in p.stderr
    p = get(h, "empty", EXIT_FAIL)
    assert "is empty" in p.stderr and "NOT_FOUND" in p.stderr


@pytest.mark.parametrize("name", ["../outside", "sub/x", "..", ".", "a\x01b"],
                         ids=["dotdot-slash", "slash", "dotdot", "dot", "control"])
def test_names_validated(tmp_path, secrets, name):
    (tmp_path / "outside").write_text("must-not-be-read")
    p = get(docker_host(tmp_path, secrets), name, EXIT_FAIL)
    assert "INVALID_ARGUMENT" in p.stderr and "file name" in p.stderr
    assert "must-not-be-read" not in p.stdout


def test_symlink_out_of_directory_refused_inside_allowed(tmp_path, secrets):
    (tmp_path / "outside").write_text("must-not-be-read")
    os.symlink(tmp_path / "outside", secrets / "evil")
    # Kubernetes: KEY -> ..data/KEY, ..data -> ..2024_01_01 (inside the volume)
    (secrets / "..2024_01_01").mkdir()
    (secrets / "..2024_01_01" / "k8s_key").write_text("k8s-value-0123456789")
    os.symlink("..2024_01_01", secrets / "..data")
    os.symlink("..data/k8s_key", secrets / "k8s_key")
    h = docker_host(tmp_path, secrets)
    p = get(h, "evil", EXIT_FAIL)
    assert "resolves outside" in p.stderr and "PERMISSION_DENIED" in p.stderr
    assert "must-not-be-read" not in p.stdout
    assert get(h, "k8s_key", EXIT_OK).stdout == "k8s-value-0123456789\n"


def test_read_only(tmp_path, secrets):
    h = docker_host(tmp_path, secrets)
    p = h.run("secret", "put", "NEW", input="v", check=EXIT_FAIL)
    assert "read-only" in p.stderr and "UNSUPPORTED" in p.stderr
    p = h.run("secret", "delete", "UPPER_SECRET", check=EXIT_FAIL)
    assert "read-only" in p.stderr and (secrets / "UPPER_SECRET").exists()
    store = docker_host(tmp_path, secrets, "    store_virtual_keys: true\n")
    assert "cannot write secrets" in store.run("key", "generate", check=EXIT_CONFIG).stderr
    line = [x for x in h.run("plugins", check=EXIT_OK).stdout.splitlines() if x.startswith("* docker ")]
    assert len(line) == 1 and line[0].split()[-1] == "read,refresh,thread-safe,list"


def test_secrets_path_setting(tmp_path, secrets):
    p = docker_host(tmp_path, "relative/dir").run("secret", "get", "x", check=EXIT_CONFIG)
    assert "secrets_path" in p.stderr and "absolute" in p.stderr
    (tmp_path / "afile").write_text("x")
    p = docker_host(tmp_path, tmp_path / "afile").run("secret", "get", "x", check=EXIT_CONFIG)
    assert "not a directory" in p.stderr
    # a directory that is not mounted yet: a warning at start, NOT_FOUND naming it
    p = docker_host(tmp_path, tmp_path / "not-mounted").run("secret", "get", "X", check=EXIT_FAIL)
    assert "does not exist" in p.stderr and "NOT_FOUND" in p.stderr


def test_default_path_is_run_secrets(tmp_path):
    text = "general_settings: {key_management_system: docker}\n"
    p = Host(tmp_path, text, env=clean_env()).run("secret", "get", "KMSPLUG_TEST_NO_SUCH",
                                                  check=EXIT_FAIL)
    assert "/run/secrets" in p.stderr
