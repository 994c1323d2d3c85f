"""`kms-host serve` against tests/vault_server: LiteLLM's documented
/key/* request shapes (urllib stands in for their curl examples), auth and
error shapes, the secret-manager side of every change (landed, or queued
and retried by the worker), SIGTERM, limits, and no secret in the log."""

import hashlib
import signal

import pytest

from serve_helpers import MASTER, Serve, key_table, wait_until, write_config


@pytest.fixture
def serve(tmp_path, vault):
    s = Serve(write_config(tmp_path), vault.plugin_env())
    yield s
    # A clean exit and no sanitizer report (ASan/TSan builds run this suite too).
    assert s.stop() == 0
    assert "Sanitizer" not in s.stderr()


def assert_litellm_error(body, code):
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["code"] == str(code)


def test_liveliness_needs_no_key(serve):
    assert serve.call("GET", "/health/liveliness", key=None) == (200, "I'm alive!")


def test_readiness_reports_the_secret_manager(serve, vault):
    st, body = serve.call("GET", "/health/readiness", key=None)
    assert st == 200 and body["status"] == "healthy", body
    assert body["secret_manager"]["name"] == "hashicorp_vault"
    assert body["secret_manager"]["status"] == "connected"
    vault.seal()
    st, body = serve.call("GET", "/health/readiness", key=None)
    assert st == 503 and body["secret_manager"]["status"] == "unhealthy", body


@pytest.mark.parametrize("key,header", [(None, "Authorization"), ("sk-wrong", "Authorization"),
                                        ("sk-12345", "x-litellm-api-key"), ("", "Authorization")])
def test_wrong_or_missing_master_key_is_401(serve, key, header):
    st, body = serve.call("POST", "/key/generate", {"key_alias": "nope"}, key=key, header=header)
    assert st == 401
    assert_litellm_error(body, 401)
    st, body = serve.call("GET", "/key/list", key=key, header=header)
    assert st == 401


def test_generate_docs_example_lands_in_vault(serve, vault, tmp_path):
    # LiteLLM's docs: curl -X POST /key/generate -H 'Authorization: Bearer sk-1234'
    #   -d '{"models": [...], "metadata": {"user": ...}, "key_alias": ..., "duration": "20m"}'
    req = {"models": ["gpt-3.5-turbo", "gpt-4"], "metadata": {"user": "ishaan@berri.ai"},
           "team_id": "core-infra", "duration": "20m", "key_alias": "my-vault-key"}
    st, body = serve.call("POST", "/key/generate", req)
    assert st == 200, body
    key = body["key"]
    assert key.startswith("sk-") and body["key_alias"] == "my-vault-key"
    for f in ("models", "metadata", "team_id", "duration"):
        assert body[f] == req[f]  # echoed as LiteLLM echoes its request
    assert body["key_name"] == "sk-..." + key[-4:]
    assert body["kms_host"]["secret_manager"] == "landed"
    assert sorted(body["kms_host"]["not_enforced"]) == ["duration", "metadata", "models", "team_id"]
    assert vault.read("litellm/my-vault-key") == key
    keys, outbox = key_table(tmp_path / "kms-host.db")
    assert keys == {"litellm/my-vault-key": hashlib.sha256(key.encode()).hexdigest()}
    assert outbox == []


def test_generate_with_caller_chosen_key_and_x_litellm_api_key(serve, vault):
    chosen = "sk-myOwnChosenKey_0123456789abcdef"
    st, body = serve.call("POST", "/key/generate", {"key": chosen}, header="x-litellm-api-key")
    assert st == 200, body
    assert body["key"] == chosen and body["key_alias"] is None
    assert vault.read(body["kms_host"]["secret_name"]) == chosen
    st, body = serve.call("POST", "/key/generate", {"key": chosen})
    assert st == 400 and "already in use" in body["error"]["message"]
    assert chosen not in body["error"]["message"]
    st, body = serve.call("POST", "/key/generate", {"key": "not-a-key"})
    assert st == 400
    assert_litellm_error(body, 400)


def test_bad_bodies_are_400_with_the_field(serve):
    st, body = serve.call("POST", "/key/generate", raw=b"{not json")
    assert st == 400 and "JSON object" in body["error"]["message"]
    st, body = serve.call("POST", "/key/generate", {"key_alias": 7})
    assert st == 400 and body["error"]["param"] == "key_alias"
    st, body = serve.call("POST", "/key/generate", {"key_alias": "../up"})
    assert st == 400 and "not valid" in body["error"]["message"]
    st, body = serve.call("POST", "/key/delete", {"keys": "sk-notalist"})
    assert st == 400 and body["error"]["param"] == "keys"
    st, body = serve.call("POST", "/key/delete", {})
    assert st == 400
    st, body = serve.call("GET", "/key/nothing")
    assert st == 404
    assert_litellm_error(body, 404)


def test_body_limit_is_413(serve):
    st, body = serve.call("POST", "/key/generate", raw=b'{"metadata": "' + b"x" * 70000 + b'"}')
    assert st == 413
    assert_litellm_error(body, 413)


def test_header_limit_is_431(serve):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(serve.url + "/health/liveliness", headers={"X-Big": "a" * 40000})
    try:
        urllib.request.urlopen(req, timeout=30)
        raise AssertionError("a 40 KB header was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 431
    assert serve.call("GET", "/health/liveliness")[0] == 200  # the server is fine


def test_delete_by_keys_and_by_aliases(serve, vault, tmp_path):
    a = serve.call("POST", "/key/generate", {"key_alias": "tenant-a/one"})[1]["key"]
    serve.call("POST", "/key/generate", {"key_alias": "two"})
    assert vault.live_names() == ["litellm/tenant-a/one", "litellm/two"]
    st, body = serve.call("POST", "/key/delete", {"keys": [a], "key_aliases": ["two"]})
    assert st == 200, body
    assert body["deleted_keys"] == [a, "two"]
    assert body["kms_host"]["secret_manager"] == "landed"
    assert vault.live_names() == []
    assert key_table(tmp_path / "kms-host.db") == ({}, [])
    st, body = serve.call("POST", "/key/delete", {"key_aliases": ["two"]})
    assert st == 404
    assert_litellm_error(body, 404)



def test_delete_stopping_at_an_unknown_key_still_delivers_the_earlier_ones(serve, vault, tmp_path):
    serve.call("POST", "/key/generate", {"key_alias": "first"})
    assert vault.live_names() == ["litellm/first"]
    st, body = serve.call("POST", "/key/delete", {"key_aliases": ["first", "unknown"]})
    assert st == 404 and "unknown" in body["error"]["message"], body
    # "first" is deleted, and its Vault delete goes out with no further request.
    assert wait_until(lambda: vault.live_names() == [], timeout=30)
    assert key_table(tmp_path / "kms-host.db") == ({}, [])
    st, body = serve.call("POST", "/key/delete", {"keys": ["sk-short"]})
    assert st == 400 and body["error"]["param"] == "keys" and "--key" not in body["error"]["message"]


@pytest.mark.parametrize("form", ["body", "path"])
def test_regenerate_both_forms(serve, vault, form):
    old = serve.call("POST", "/key/generate", {"key_alias": "rot"})[1]["key"]
    if form == "body":
        st, body = serve.call("POST", "/key/regenerate", {"key": old})
    else:
        st, body = serve.call("POST", f"/key/{old}/regenerate", {})
    assert st == 200, body
    new = body["key"]
    assert new != old and body["key_alias"] == "rot"
    assert body["kms_host"]["secret_manager"] == "landed"
    assert vault.read("litellm/rot") == new
    assert serve.call("GET", f"/key/info?key={old}")[0] == 404


def test_update_alias_moves_the_secret(serve, vault, tmp_path):
    key = serve.call("POST", "/key/generate", {"key_alias": "before"})[1]["key"]
    # LiteLLM's docs: curl /key/update -d '{"key": "sk-...", "key_alias": ..., "metadata": ...}'
    st, body = serve.call("POST", "/key/update", {"key": key, "key_alias": "tenant-b/after",
                                                  "metadata": {"team": "x"}})
    assert st == 200, body
    assert body["key_alias"] == "tenant-b/after" and body["metadata"] == {"team": "x"}
    assert body["kms_host"]["secret_manager"] == "landed"
    assert body["kms_host"]["secret_name"] == "litellm/tenant-b/after"
    assert body["kms_host"]["removed_secret"] == "litellm/before"
    assert body["kms_host"]["not_enforced"] == ["metadata"]
    assert vault.live_names() == ["litellm/tenant-b/after"]
    assert vault.read("litellm/tenant-b/after") == key
    assert serve.call("GET", f"/key/info?key={key}")[1]["info"]["key_alias"] == "tenant-b/after"
    # Without key_alias nothing moves; with an alias in use, nothing changes.
    st, body = serve.call("POST", "/key/update", {"key": key, "models": ["gpt-4"]})
    assert st == 200 and body["kms_host"]["secret_manager"] == "not_stored", body
    serve.call("POST", "/key/generate", {"key_alias": "taken"})
    st, body = serve.call("POST", "/key/update", {"key": key, "key_alias": "taken"})
    assert st == 400 and "already" in body["error"]["message"], body
    assert vault.read("litellm/tenant-b/after") == key
    st, body = serve.call("POST", "/key/update", {"key_alias": "x"})
    assert st == 400 and body["error"]["param"] == "key"
    assert serve.call("POST", "/key/update", {"key": "sk-" + "n" * 30, "key_alias": "y"})[0] == 404


def test_info_and_list(serve):
    k1 = serve.call("POST", "/key/generate", {"key_alias": "i1"})[1]
    k2 = serve.call("POST", "/key/generate", {})[1]
    st, body = serve.call("GET", f"/key/info?key={k1['key']}")
    assert st == 200 and body["info"]["key_alias"] == "i1", body
    assert k1["key"] not in str(body)
    # A virtual key may ask about itself (with or without ?key=), not others.
    assert serve.call("GET", "/key/info", key=k1["key"])[1]["info"]["key_alias"] == "i1"
    assert serve.call("GET", f"/key/info?key={k1['key']}", key=k1["key"])[0] == 200
    st, body = serve.call("GET", f"/key/info?key={k2['key']}", key=k1["key"])
    assert st == 403
    assert_litellm_error(body, 403)
    st, body = serve.call("POST", "/key/generate", {}, key=k1["key"])
    assert st == 403
    st, body = serve.call("GET", "/key/list")
    assert st == 200 and sorted(body["keys"]) == sorted([k1["token_id"], k2["token_id"]])
    assert body["total_count"] == 2
    st, body = serve.call("GET", "/key/list?return_full_object=true")
    assert {k["key_alias"] for k in body["keys"]} == {"i1", None}


def test_list_pages_as_litellm(serve):
    ids = [serve.call("POST", "/key/generate", {"key_alias": f"p{i}"})[1]["token_id"]
           for i in range(12)]
    st, first = serve.call("GET", "/key/list")  # LiteLLM's default: page 1, size 10
    assert st == 200 and len(first["keys"]) == 10, first
    assert (first["total_count"], first["current_page"], first["total_pages"]) == (12, 1, 2)
    st, second = serve.call("GET", "/key/list?page=2&size=10")
    assert len(second["keys"]) == 2 and second["current_page"] == 2
    assert sorted(first["keys"] + second["keys"]) == sorted(ids)  # each key on one page
    st, body = serve.call("GET", "/key/list?page=3&size=5&return_full_object=true")
    assert [k["token"] for k in body["keys"]] == second["keys"]  # the same order every time
    assert serve.call("GET", "/key/list?page=9")[1]["keys"] == []
    for bad in ("page=0", "size=101", "size=x", "page=-1"):
        st, body = serve.call("GET", f"/key/list?{bad}")
        assert st == 400 and body["error"]["param"] == bad.split("=")[0], body


def test_store_down_queues_then_worker_delivers(serve, vault, tmp_path):
    vault.seal()
    st, body = serve.call("POST", "/key/generate", {"key_alias": "later"})
    assert st == 200, body  # the key change is saved and the key is the caller's
    assert body["kms_host"]["secret_manager"] == "queued"
    assert body["kms_host"]["queued_operations"] == 1
    assert "sealed" in body["kms_host"]["error"].lower() or "503" in body["kms_host"]["error"]
    key = body["key"]
    st, gone = serve.call("POST", "/key/generate", {"key_alias": "gone"})
    assert gone["kms_host"]["secret_manager"] == "queued"
    st, body = serve.call("POST", "/key/delete", {"key_aliases": ["gone"]})
    assert st == 200 and body["kms_host"]["secret_manager"] == "queued"
    vault.seal(False)
    # No request: the background worker retries with backoff on its own.
    assert wait_until(lambda: key_table(tmp_path / "kms-host.db")[1] == [], timeout=60)
    assert vault.read("litellm/later") == key
    assert vault.live_names() == ["litellm/later"]


def test_sigterm_exits_0(tmp_path, vault):
    s = Serve(write_config(tmp_path), vault.plugin_env())
    assert s.call("GET", "/health/liveliness")[0] == 200
    assert s.stop(signal.SIGTERM) == 0
    assert "finishing in-flight requests" in s.stderr()


def test_sigterm_finishes_the_request_in_flight(tmp_path, vault):
    import threading
    s = Serve(write_config(tmp_path), vault.plugin_env())
    # Vault answers the write slowly, so the request is in flight at SIGTERM.
    assert vault.request("POST", "/__test__/faults",
                         {"method": "POST", "path": "/v1/secret/data/litellm/slow",
                          "delay_ms": 1500, "times": 1})[0] == 200
    out = {}
    t = threading.Thread(target=lambda: out.update(
        r=s.call("POST", "/key/generate", {"key_alias": "slow"})))
    t.start()
    assert wait_until(lambda: '"path": "/v1/secret/data/litellm/slow"' in str(
        vault.request("GET", "/__test__/requests")[1]).replace("'", '"'), timeout=30)
    s.proc.send_signal(signal.SIGTERM)
    t.join(60)
    st, body = out["r"]
    assert st == 200 and body["kms_host"]["secret_manager"] == "landed", body
    assert s.stop() == 0
    assert vault.read("litellm/slow") == body["key"]


def test_no_secret_in_the_log(tmp_path, vault):
    s = Serve(write_config(tmp_path), vault.plugin_env())
    secrets = [MASTER]
    k = s.call("POST", "/key/generate", {"key_alias": "log1"})[1]["key"]
    secrets.append(k)
    s.call("GET", f"/key/info?key={k}")
    new = s.call("POST", f"/key/{k}/regenerate", {})[1]["key"]
    secrets.append(new)
    chosen = "sk-chosenForTheLogTest_0123456789"
    secrets.append(chosen)
    s.call("POST", "/key/generate", {"key": chosen})
    s.call("POST", "/key/generate", {"key": chosen})  # an error about it
    s.call("POST", "/key/generate", {}, key="sk-wrongmasterkey0123456789abcd")
    secrets.append("sk-wrongmasterkey0123456789abcd")
    vault.seal()
    secrets.append(s.call("POST", "/key/generate", {"key_alias": "log2"})[1]["key"])
    s.call("POST", "/key/delete", {"keys": [new, chosen]})
    vault.seal(False)
    assert s.stop() == 0
    log = s.stderr()
    assert '"route":"/key/{key}/regenerate"' in log and '"route":"/key/info"' in log
    for secret in secrets:
        assert secret not in log


def test_master_key_from_os_environ(tmp_path, vault):
    cfg = write_config(tmp_path, master="os.environ/LITELLM_MASTER_KEY")
    env = vault.plugin_env(LITELLM_MASTER_KEY="sk-from-the-environment-0123")
    vault.write("LITELLM_MASTER_KEY", "sk-from-vault-0123456789")
    s = Serve(cfg, env)
    try:
        # Read through the plugin first, as LiteLLM's get_secret does.
        assert s.call("GET", "/key/list", key="sk-from-vault-0123456789")[0] == 200
        assert s.call("GET", "/key/list", key="sk-from-the-environment-0123")[0] == 401
    finally:
        assert s.stop() == 0


def test_unresolvable_or_missing_master_key_refuses_to_start(tmp_path, vault):
    import subprocess
    from kms_host_helpers import HOST, PLUGIN_DIR
    for master, want in [("os.environ/NOT_SET_ANYWHERE", "master_key"),
                         (None, "master_key is not set")]:
        text = write_config(tmp_path, master=master or "x").read_text()
        if master is None:
            text = text.replace("  master_key: x\n", "")
        cfg = write_config(tmp_path, text=text)
        p = subprocess.run([str(HOST), "--config", str(cfg), "--plugin-dir", str(PLUGIN_DIR),
                            "serve", "--listen", "127.0.0.1:0"], env=vault.plugin_env(),
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 3, p.stderr
        assert want in p.stderr and "listening" not in p.stdout


def test_bad_listen_is_a_usage_error(tmp_path, vault):
    import subprocess
    from kms_host_helpers import HOST, PLUGIN_DIR
    p = subprocess.run([str(HOST), "--config", str(write_config(tmp_path)), "--plugin-dir",
                        str(PLUGIN_DIR), "serve", "--listen", "localhost"],
                       env=vault.plugin_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "ADDR:PORT" in p.stderr


def test_tls(tmp_path, vault, certs):
    import json
    import ssl
    import urllib.request
    s = Serve(write_config(tmp_path), vault.plugin_env(),
              args=("--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key")))
    try:
        assert s.url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        req = urllib.request.Request(s.url + "/key/generate", data=b'{"key_alias": "tls"}',
                                     method="POST", headers={"Authorization": f"Bearer {MASTER}"})
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            body = json.loads(r.read())
        assert body["kms_host"]["secret_manager"] == "landed"
        assert vault.read("litellm/tls") == body["key"]
    finally:
        assert s.stop() == 0


def test_tls_options_go_together(tmp_path, vault, certs):
    import subprocess
    from kms_host_helpers import HOST, PLUGIN_DIR
    p = subprocess.run([str(HOST), "--config", str(write_config(tmp_path)), "--plugin-dir",
                        str(PLUGIN_DIR), "serve", "--tls-cert", str(certs / "server.pem")],
                       env=vault.plugin_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "go together" in p.stderr


def test_slow_client_is_cut_off(tmp_path, vault):
    import socket
    s = Serve(write_config(tmp_path), vault.plugin_env(), args=("--client-timeout", "1"))
    try:
        host, port = s.url.rsplit("/", 1)[1].split(":")
        c = socket.create_connection((host, int(port)), timeout=30)
        c.sendall(b"POST /key/generate HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        # The server closes it; without the timeout recv would raise socket.timeout.
        assert c.recv(1024) == b""
        c.close()
        assert s.call("GET", "/health/liveliness")[0] == 200  # others are served
    finally:
        assert s.stop() == 0
