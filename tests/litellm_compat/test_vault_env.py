"""LiteLLM drop-in, the Vault plugin's part (issue 10 items 8, 9, 10, 12):
the environment LiteLLM's HashicorpSecretManager reads, run through kms-host
and the real hashicorp_vault.so against tests/vault_server, asserting the
exact requests it logs. Facts from LiteLLM's source
(litellm/secret_managers/hashicorp_secret_manager.py, get_ssl_verify in
litellm/llms/custom_httpx/http_handler.py): URLs are f"{HCP_VAULT_ADDR}/v1/..."
with the address as written; only HCP_VAULT_* variables are read; TLS follows
SSL_VERIFY (a path or true/false) and SSL_CERT_FILE; a write with a
description sends {"data": {"key": v, "description": d}}."""

import http.server
import threading
import urllib.error
import urllib.request

import pytest

from conftest import EXIT_CONFIG, EXIT_FAIL, EXIT_OK, Host, clean_env

KEY = "sk-openai-from-vault-0123456789"

GET_CONFIG = """\
    general_settings:
      key_management_system: hashicorp_vault
    """


class PrefixProxy:
    """A loopback reverse proxy serving Vault under /vault (as a gateway
    would): /vault/v1/... goes to the Vault server's /v1/...; anything else
    is a 404 that Vault never sees. Records (method, path) it was asked for."""

    def __init__(self, vault, prefix="/vault"):
        self.seen = []
        self.redirects = {}  # path -> Location of a 307 answer
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _any(self):
                outer.seen.append((self.command, self.path))
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                if self.path in outer.redirects:
                    self.send_response(307)
                    self.send_header("Location", outer.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if not self.path.startswith(prefix + "/v1/"):
                    self.send_response(404)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                req = urllib.request.Request(vault.url + self.path[len(prefix):], data=body,
                                             method=self.command)
                for k in ("X-Vault-Token", "X-Vault-Request", "Content-Type",
                          "X-Vault-Namespace"):
                    if self.headers.get(k):
                        req.add_header(k, self.headers[k])
                try:
                    with urllib.request.urlopen(req, context=vault.ctx, timeout=10) as r:
                        status, raw = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, raw = e.code, e.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def prefix_proxy(vault):
    p = PrefixProxy(vault)
    yield p
    p.stop()


def secret_get(tmp_path, env, name="OPENAI_API_KEY", check=EXIT_OK):
    return Host(tmp_path, GET_CONFIG, env=env).run("secret", "get", name, check=check)


# --- item 8: HCP_VAULT_ADDR with a path prefix -------------------------------------

@pytest.mark.parametrize("var,suffix", [("HCP_VAULT_ADDR", "/vault"), ("HCP_VAULT_ADDR", "/vault//"),
                                        ("VAULT_ADDR", "/vault/"), ("BAO_ADDR", "/vault")])
def test_address_path_prefix_is_kept(tmp_path, vault, prefix_proxy, var, suffix):
    vault.write("OPENAI_API_KEY", {"key": KEY})
    vault.clear_log()
    token = {"HCP_VAULT_ADDR": "HCP_VAULT_TOKEN", "VAULT_ADDR": "VAULT_TOKEN",
             "BAO_ADDR": "BAO_TOKEN"}[var]
    env = clean_env(**{var: prefix_proxy.url + suffix, token: "root", "VAULT_MAX_RETRIES": 0})
    p = secret_get(tmp_path, env)
    assert p.stdout.strip() == KEY
    assert prefix_proxy.seen == [("GET", "/vault/v1/secret/data/OPENAI_API_KEY")]
    assert vault.kv_requests() == [("GET", "/v1/secret/data/OPENAI_API_KEY", None)]


@pytest.mark.parametrize("addr,needle", [
    ("http://127.0.0.1:1/vault?x=1", "query (?) or fragment"),
    ("http://127.0.0.1:1/vault#f", "query (?) or fragment"),
    ("http://user:pw@127.0.0.1:1/vault", "credentials"),
    ("http://127.0.0.1:1/a/../vault", "bad path prefix"),
    ("http://user:pw@127.0.0.1:1/vault?q#f", "credentials"),
])
def test_address_path_prefix_errors(tmp_path, addr, needle):
    p = secret_get(tmp_path, clean_env(HCP_VAULT_ADDR=addr, HCP_VAULT_TOKEN="root"),
                   check=EXIT_CONFIG)
    assert needle in p.stderr + p.stdout and "HCP_VAULT_ADDR" in p.stderr + p.stdout
    assert "pw" not in p.stderr + p.stdout


def test_address_path_prefix_keeps_redirect_rules(tmp_path, vault, prefix_proxy):
    """Same origin (another path under the prefix) is followed; another port
    is refused and is sent nothing, the token included."""
    other = PrefixProxy(vault)
    try:
        vault.write("OPENAI_API_KEY", {"key": KEY})
        env = clean_env(HCP_VAULT_ADDR=prefix_proxy.url + "/vault", HCP_VAULT_TOKEN="root",
                        VAULT_MAX_RETRIES=0, HCP_VAULT_REFRESH_INTERVAL=0)
        prefix_proxy.redirects["/vault/v1/secret/data/MOVED"] = (
            prefix_proxy.url + "/vault/v1/secret/data/OPENAI_API_KEY")
        p = secret_get(tmp_path, env, "MOVED")
        assert p.stdout.strip() == KEY
        assert prefix_proxy.seen == [("GET", "/vault/v1/secret/data/MOVED"),
                                     ("GET", "/vault/v1/secret/data/OPENAI_API_KEY")]
        prefix_proxy.seen.clear()
        prefix_proxy.redirects["/vault/v1/secret/data/AWAY"] = (
            other.url + "/vault/v1/secret/data/OPENAI_API_KEY")
        p = secret_get(tmp_path, env, "AWAY", check=EXIT_FAIL)
        assert "redirect_allowed_hosts" in p.stderr + p.stdout
        assert prefix_proxy.seen == [("GET", "/vault/v1/secret/data/AWAY")]
        assert other.seen == []
    finally:
        other.stop()


# --- item 9: HCP_VAULT_* only, when any is set ---------------------------------------

def all_requests(vault):
    st, body = vault.call("GET", "/__test__/requests")
    assert st == 200
    return [(r["method"], r["path"]) for r in body["requests"]]


def test_hcp_family_ignores_vault_cli_variables(tmp_path, vault, certs):
    """VAULT_NAMESPACE=admin (and a VAULT_ADDR/VAULT_TOKEN) exported for the
    Vault CLI: with HCP_VAULT_ADDR/TOKEN set, LiteLLM reads /v1/secret/...,
    and so do we; the INFO line names the family and the ignored names."""
    vault.write("OPENAI_API_KEY", {"key": KEY})
    vault.clear_log()
    env = vault.env(VAULT_NAMESPACE="admin", VAULT_ADDR="http://127.0.0.1:1",
                    VAULT_TOKEN="cli-token-not-for-the-gateway", BAO_NAMESPACE="bao")
    p = secret_get(tmp_path, env)
    assert p.stdout.strip() == KEY
    assert all_requests(vault) == [("GET", "/v1/secret/data/OPENAI_API_KEY")]
    info = [l for l in p.stderr.splitlines() if "come from the HCP_VAULT_* variables" in l]
    assert len(info) == 1, p.stderr
    assert "ignored: VAULT_ADDR, VAULT_TOKEN, VAULT_NAMESPACE, BAO_NAMESPACE" in info[0]
    assert "cli-token" not in p.stderr + p.stdout


def test_vault_family_when_no_hcp_variable(tmp_path, vault):
    """No HCP_VAULT_*: the VAULT_* family (the namespace goes into the path);
    BAO_* is ignored then."""
    vault.clear_log()
    env = clean_env(VAULT_ADDR=vault.url, VAULT_TOKEN="root", VAULT_NAMESPACE="team1",
                    VAULT_CACERT=vault.certs / "ca.pem", VAULT_MAX_RETRIES=0,
                    BAO_NAMESPACE="bao", BAO_ADDR="http://127.0.0.1:1")
    p = secret_get(tmp_path, env, check=None)
    assert all_requests(vault) == [("GET", "/v1/team1/secret/data/OPENAI_API_KEY")], p.stderr
    assert "come from the VAULT_* variables (no HCP_VAULT_* variable is set); ignored: " \
           "BAO_ADDR, BAO_NAMESPACE" in p.stderr


def test_bao_family_last(tmp_path, vault):
    vault.write("OPENAI_API_KEY", {"key": KEY})
    vault.clear_log()
    env = clean_env(BAO_ADDR=vault.url, BAO_TOKEN="root", VAULT_CACERT=vault.certs / "ca.pem",
                    VAULT_MAX_RETRIES=0)
    assert secret_get(tmp_path, env).stdout.strip() == KEY
    assert all_requests(vault) == [("GET", "/v1/secret/data/OPENAI_API_KEY")]


# --- item 10: LiteLLM's SSL_VERIFY / SSL_CERT_FILE, after the VAULT_* ones ------------

def tls_env(vault, **extra):
    """LiteLLM's variables against the TLS server, without VAULT_CACERT."""
    env = clean_env(HCP_VAULT_ADDR=vault.url, HCP_VAULT_TOKEN="root", VAULT_MAX_RETRIES=0)
    for k in ("SSL_VERIFY", "SSL_CERT_FILE"):  # none from the caller's environment
        env.pop(k, None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.mark.parametrize("extra", [
    {"SSL_CERT_FILE": "ca"},                     # LiteLLM: CA bundle when verifying
    {"SSL_VERIFY": "ca"},                        # LiteLLM: SSL_VERIFY may be the bundle's path
    {"SSL_VERIFY": "True", "SSL_CERT_FILE": "ca"},
])
def test_ssl_cert_file_and_ssl_verify_path_trust_the_ca(tmp_path, vault, extra):
    vault.write("OPENAI_API_KEY", {"key": KEY})
    ca = str(vault.certs / "ca.pem")
    env = tls_env(vault, **{k: ca if v == "ca" else v for k, v in extra.items()})
    p = secret_get(tmp_path, env)
    assert p.stdout.strip() == KEY
    assert "NOT verified" not in p.stderr


def test_without_any_ca_the_test_server_is_not_trusted(tmp_path, vault):
    """The control for the test above: the system store does not trust the test CA."""
    p = secret_get(tmp_path, tls_env(vault), check=EXIT_FAIL)
    assert "TLS" in p.stderr + p.stdout or "certificate" in p.stderr + p.stdout


@pytest.mark.parametrize("value", ["false", "False", "0"])
def test_ssl_verify_false_turns_verification_off_loudly(tmp_path, vault, value):
    vault.write("OPENAI_API_KEY", {"key": KEY})
    p = secret_get(tmp_path, tls_env(vault, SSL_VERIFY=value))
    assert p.stdout.strip() == KEY
    warn = [l for l in p.stderr.splitlines() if "NOT verified" in l]
    assert len(warn) == 1 and "SSL_VERIFY turns TLS verification off" in warn[0], p.stderr


def test_vault_variables_come_first(tmp_path, vault):
    """VAULT_SKIP_VERIFY=false beats SSL_VERIFY=false; VAULT_CACERT beats
    SSL_CERT_FILE (a broken SSL_CERT_FILE is then not even looked at)."""
    p = secret_get(tmp_path, tls_env(vault, SSL_VERIFY="false", VAULT_SKIP_VERIFY="false"),
                   check=EXIT_FAIL)
    assert "NOT verified" not in p.stderr
    vault.write("OPENAI_API_KEY", {"key": KEY})
    p = secret_get(tmp_path, tls_env(vault, VAULT_CACERT=vault.certs / "ca.pem",
                                     SSL_CERT_FILE="/nonexistent/ca.pem"))
    assert p.stdout.strip() == KEY


@pytest.mark.parametrize("extra,needle", [
    ({"SSL_VERIFY": "maybe"}, "SSL_VERIFY must be true, false or the path"),
    ({"SSL_VERIFY": "/nonexistent/ca.pem"}, "SSL_VERIFY must be true, false or the path"),
    ({"SSL_CERT_FILE": "/nonexistent/ca.pem"}, "SSL_CERT_FILE=/nonexistent/ca.pem"),
])
def test_bad_ssl_variables_are_config_errors(tmp_path, vault, extra, needle):
    vault.clear_log()
    p = secret_get(tmp_path, tls_env(vault, **extra), check=EXIT_CONFIG)
    assert needle in p.stderr
    assert all_requests(vault) == []


# --- item 12: the description inside the KV data, as LiteLLM writes it ---------------

DESCRIBED = """\
    general_settings:
      key_management_system: hashicorp_vault
      key_management_settings:
        store_virtual_keys: true
        access_mode: read_and_write
        description: "Virtual key stored by LiteLLM"
    """


def test_description_setting_is_written_next_to_key(tmp_path, vault):
    vault.clear_log()
    h = Host(tmp_path, DESCRIBED, env=vault.env())
    p = h.run("key", "generate", "--alias", "team-a/gw", check=EXIT_OK)
    key = next(w for w in p.stdout.split() if w.startswith("sk-"))
    assert "ignoring unknown setting 'description'" not in p.stderr
    # exactly LiteLLM's body, and no custom_metadata request (LiteLLM makes none)
    assert vault.kv_requests() == [
        ("POST", "/v1/secret/data/litellm/team-a/gw",
         {"data": {"key": key, "description": "Virtual key stored by LiteLLM"}})]
    assert [r for r in all_requests(vault) if "/metadata/" in r[1]] == []
    assert vault.read("litellm/team-a/gw") == {"key": key,
                                               "description": "Virtual key stored by LiteLLM"}


def test_description_metadata_setting_also_posts_custom_metadata(tmp_path, vault):
    vault.clear_log()
    h = Host(tmp_path, DESCRIBED.rstrip(" ") + "        description_metadata: true\n",
             env=vault.env())
    h.run("key", "generate", "--alias", "k2", check=EXIT_OK)
    reqs = vault.kv_requests()
    assert [(m, p) for m, p, _ in reqs] == [("POST", "/v1/secret/data/litellm/k2"),
                                            ("POST", "/v1/secret/metadata/litellm/k2")]
    assert reqs[1][2] == {"custom_metadata": {"description": "Virtual key stored by LiteLLM"}}


def test_value_written_by_litellm_with_description_reads_back(tmp_path, vault):
    """What LiteLLM's async_write_secret stores with a description."""
    vault.write("OPENAI_API_KEY", {"key": KEY, "description": "written by LiteLLM"})
    p = secret_get(tmp_path, vault.env())
    assert p.stdout.strip() == KEY
