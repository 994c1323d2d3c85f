"""kms-host's ABI 1.1 commands end to end: `health`, `watch` and `reconcile`,
with the hashicorp_vault plugin against tests/vault_server over TLS (sealed,
stopped, a refused token, faults injected on one path), `watch` also with
aws_secret_manager against tests/aws_server (only the config name changes), `reconcile` also
with aws_secret_manager, the env plugin, and
the 1.0 test plugin (tests/abi's v10.so, built against the frozen 1.0
headers) for the "plugin has no such slot" exit status."""

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from kms_host_helpers import (BUILD, EXIT_CONFIG, EXIT_FAIL, EXIT_OK, EXIT_QUEUED, EXIT_USAGE,
                              HOST, PLUGIN_DIR, SRC, VAULT_PLUGIN, VAULT_SERVER, Host, base_env,
                              outbox_rows, parse_fields)

EXIT_UNSUPPORTED, EXIT_BACKEND = 5, 6  # host_stub/host.h, README.md
ABI_PLUGIN_DIR = BUILD / "tests" / "abi" / "plugins"  # v10.so: a plugin built against ABI 1.0


@pytest.fixture(scope="module", autouse=True)
def _need_plugins_and_server():
    # A missing plugin or server fails the suite; it never skips it green.
    for f in (VAULT_PLUGIN, VAULT_SERVER, ABI_PLUGIN_DIR / "v10.so"):
        if not f.exists():
            pytest.fail(f"{f} is not built / missing (cmake --build build)", pytrace=False)


CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
general_settings:
  key_management_system: {kms}
  key_management_settings:
"""

KEYS = {"store_virtual_keys": "true", "access_mode": "read_and_write"}


def make_host(tmp_path, vault=None, settings=None, kms="hashicorp_vault", plugin_dir=PLUGIN_DIR,
              **env):
    settings = KEYS if settings is None else settings
    text = CONFIG.format(kms=kms)
    if settings:
        text += "".join(f"    {k}: {v}\n" for k, v in settings.items())
    else:
        text = text.replace("  key_management_settings:\n", "")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    e = vault.plugin_env() if vault else base_env()
    e.update({k: str(v) for k, v in env.items()})
    return Host(cfg, env=e, plugin_dir=plugin_dir)


def outbox(tmp_path):
    return [tuple(r) for r in outbox_rows(tmp_path / "kms-host.db")]


# --- health -------------------------------------------------------------------------

def test_health_healthy_vault(tmp_path, vault):
    h = make_host(tmp_path, vault)
    f = parse_fields(h.run("health", check=EXIT_OK).stdout)
    assert f["plugin"] == "hashicorp_vault" and f["healthy"] == "yes" and f["probe"] == "OK"
    assert f["authenticated"] in ("yes", "unknown") and f["reachable"] in ("yes", "unknown")
    assert f["last_error"] == "none" and f["errors"] == "none"
    for k in ("token_ttl", "cache_entries", "hits", "misses", "negative_hits", "stale_serves",
              "fetches", "logins", "renewals"):
        assert k in f
    j = json.loads(h.run("health", "--json", check=EXIT_OK).stdout)
    assert j["healthy"] is True and j["reason"] is None and j["probe"]["status"] == "OK"
    assert j["token_ttl_seconds"] is None  # a static token does not expire
    assert j["errors_by_status"] == {} and j["last_error"] is None
    for k in ("cache_entries", "hits", "misses", "negative_hits", "stale_serves", "fetches",
              "logins", "renewals"):
        assert isinstance(j[k], int)


def test_health_sealed_vault_is_unhealthy(tmp_path, vault):
    h = make_host(tmp_path, vault)
    vault.seal()
    p = h.run("health", check=EXIT_FAIL)
    f = parse_fields(p.stdout)
    assert f["healthy"].startswith("no -- the secret manager is unreachable")
    assert "sealed" in p.stdout.lower()
    assert "hashicorp_vault is unhealthy: the secret manager is unreachable" in p.stderr
    assert f["last_error"].startswith("UNAVAILABLE at ") and "UNAVAILABLE=1" in f["errors"]
    j = json.loads(h.run("health", "--json", check=EXIT_FAIL).stdout)
    assert j["healthy"] is False and j["probe"]["status"] == "UNAVAILABLE"
    assert j["last_error"]["status"] == "UNAVAILABLE" and j["errors_by_status"]["UNAVAILABLE"] == 1


def test_health_stopped_vault_is_unhealthy(tmp_path, vault):
    h = make_host(tmp_path, vault)
    vault.stop()
    p = h.run("health", check=EXIT_FAIL)
    assert "unhealthy: the secret manager is unreachable" in p.stderr
    assert parse_fields(p.stdout)["probe"].startswith("UNAVAILABLE")


def test_health_refused_token_is_unhealthy(tmp_path, vault):
    h = make_host(tmp_path, vault, HCP_VAULT_TOKEN="not-a-valid-token")
    p = h.run("health", check=EXIT_FAIL)
    assert "unhealthy: not authenticated" in p.stderr
    assert parse_fields(p.stdout)["probe"].startswith("UNAUTHENTICATED")
    assert "not-a-valid-token" not in p.stdout + p.stderr


def test_health_env_plugin(tmp_path):
    # env has a health slot; the environment is always reachable and there is nothing to
    # authenticate (unknown), which is not unhealthy (README: exit 0).
    h = make_host(tmp_path, settings={}, kms="env")
    f = parse_fields(h.run("health", check=EXIT_OK).stdout)
    assert f["plugin"] == "env" and f["healthy"] == "yes"
    assert f["reachable"] == "yes" and f["authenticated"] == "unknown"
    j = json.loads(h.run("health", "--json", check=EXIT_OK).stdout)
    assert j["reachable"] is True and j["authenticated"] is None


def test_health_plugin_without_health_slot(tmp_path):
    h = make_host(tmp_path, settings={}, kms="v10", plugin_dir=ABI_PLUGIN_DIR)
    p = h.run("health", check=EXIT_UNSUPPORTED)
    assert "plugin 'v10' has no health slot" in p.stderr and "ABI 1.0" in p.stderr
    assert p.stdout == ""


def test_health_usage(tmp_path, vault):
    h = make_host(tmp_path, vault)
    assert "usage: kms-host --config FILE health" in h.run("health", "--bogus",
                                                           check=EXIT_USAGE).stderr
    assert "exit 0 healthy" in h.run("health", "--help", check=EXIT_OK).stdout.lower()


# --- watch --------------------------------------------------------------------------

INTERVAL = 2  # HCP_VAULT_REFRESH_INTERVAL for the watch tests (seconds)


class Watch:
    """kms-host watch as a subprocess, its stdout read line by line."""

    def __init__(self, host, *args):
        cmd = [str(HOST), "--config", str(host.config), "--plugin-dir", str(host.plugin_dir),
               "watch"] + list(args)
        self.p = subprocess.Popen(cmd, env=host.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, bufsize=0)
        self.buf = ""   # read from the pipe, not yet returned as a line
        self.seen = ""  # everything read from stdout so far (finish() adds the rest)
        self.diag = getattr(host, "diag", None)  # what the backend saw, for a failure

    def line(self, timeout):
        """The next stdout line, "" at end of output, or None after `timeout` seconds. Reads
        the pipe's descriptor itself: a buffered readline would take several lines at once
        and select() would then wait for output that has already arrived."""
        end = time.monotonic() + timeout
        while "\n" not in self.buf:
            left = end - time.monotonic()
            r, _, _ = select.select([self.p.stdout], [], [], max(left, 0))
            if not r:
                return None
            chunk = os.read(self.p.stdout.fileno(), 4096).decode()
            if not chunk:
                ln, self.buf = self.buf, ""
                return ln
            self.buf += chunk
            self.seen += chunk
        ln, self.buf = self.buf.split("\n", 1)
        return ln

    def wait_for(self, prefix, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ln = self.line(end - time.monotonic())
            if ln is None or ln == "":
                break
            if ln.startswith(prefix):
                return ln, time.monotonic()
        rc = self.p.poll()  # None: still running; < 0: killed by that signal (a crash)
        self.kill()
        seen_by_backend = f"; the backend saw: {self.diag()}" if self.diag else ""
        pytest.fail(f"no line starting {prefix!r} within {timeout} s (kms-host watch "
                    f"{'still running' if rc is None else f'exited with {rc}'}); "
                    f"stdout: {self.seen!r}; "
                    f"stderr: {self.p.stderr.read().decode()}{seen_by_backend}")

    def finish(self, timeout=15):
        out, err = self.p.communicate(timeout=timeout)
        return self.p.returncode, self.seen + out.decode(), err.decode()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def vault_host(tmp_path, vault, **env):
    return make_host(tmp_path, vault, {"access_mode": "read_and_write"},
                     HCP_VAULT_REFRESH_INTERVAL=INTERVAL, **env)


def test_watch_sees_rotation_and_deletion(tmp_path, vault):
    vault.write("prov/openai", "sk-old-0123456789")
    h = vault_host(tmp_path, vault)
    w = Watch(h, "--count", "2", "--timeout", "30", "prov/openai")
    try:
        w.wait_for("watching prov/openai version=1", 15)
        vault.write("prov/openai", "sk-new-0123456789")  # a rotation made outside the host
        t0 = time.monotonic()
        ln, t1 = w.wait_for("updated ", 3 * INTERVAL)
        assert ln == "updated prov/openai version=2"
        # within one refresh interval (the plugin re-reads at 75-90% of it), plus the
        # fetch and this test's own polling
        assert t1 - t0 <= INTERVAL + 1.0, t1 - t0
        assert vault.request("DELETE", "/v1/secret/data/prov/openai")[0] in (200, 204)
        ln, _ = w.wait_for("deleted ", 3 * INTERVAL)
        assert ln == "deleted prov/openai"
        rc, out, err = w.finish()
        assert rc == EXIT_OK, err
        assert "sk-old" not in out + err and "sk-new" not in out + err  # never a value
    finally:
        w.kill()


@contextlib.contextmanager
def aws_backend(tmp_path, settings):
    """tests/aws_server (real SigV4) and a host configured for aws_secret_manager against it:
    yields (host, a boto3 client of the same server, for changes made outside the host)."""
    sys.path[:0] = [str(SRC / "tests" / "aws_server"), str(SRC / "tests")]
    from aws_test_helpers import KEY_ID, REGION, SECRET_KEY, boto3  # fails (never skips) w/o boto3
    from testserver.launcher import ServerProcess
    plugin = PLUGIN_DIR / "aws_secret_manager.so"
    if not plugin.exists():
        pytest.fail(f"{plugin} is not built (cmake --build build)", pytrace=False)
    srv = ServerProcess(str(SRC / "tests" / "aws_server" / "server.py"),
                        ["--test-controls", "--region", REGION, "--access-key-id", KEY_ID,
                         "--secret-access-key", SECRET_KEY], str(tmp_path / "aws"))
    srv.start()
    try:
        sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=srv.url,
                          aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET_KEY)
        h = make_host(tmp_path, settings=settings, kms="aws_secret_manager", AWS_REGION=REGION,
                      AWS_ENDPOINT_URL_SECRETS_MANAGER=srv.url, AWS_ACCESS_KEY_ID=KEY_ID,
                      AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
                      AWS_CONFIG_FILE="/nonexistent", AWS_EC2_METADATA_DISABLED="true")
        h.diag = lambda: aws_request_times(srv.url)
        yield h, sm
    finally:
        assert srv.stop() == 0


def aws_request_times(url):
    """tests/aws_server's request log as "seconds-ago operation" items (a failure's context)."""
    from aws_test_helpers import AwsServer  # aws_backend put tests/aws_server on sys.path
    try:
        reqs = AwsServer(url).requests()
    except (OSError, AssertionError) as e:
        return f"(request log unavailable: {e!r})"
    now = time.time()
    return ", ".join("%.2fs-ago %s" % (now - q["time"], q["headers"].get("X-Amz-Target", q["path"]))
                     for q in reqs[-20:])


# The AWS watches allow 5 refresh intervals: a loaded CI machine once took more than 3 (the
# failure message now carries the server's request log, to tell a slow refresher from a lost
# notification).
AWS_WAIT = 5 * INTERVAL


def test_watch_aws_secret_manager(tmp_path):
    """The same watch with only the backend's config name changed: aws_secret_manager against
    tests/aws_server (real SigV4), a rotation and a deletion made with boto3 outside the host."""
    w = None
    with aws_backend(tmp_path, {"access_mode": "read_and_write",
                                "refresh_interval": INTERVAL}) as (h, sm):
        try:
            sm.create_secret(Name="prov/openai", SecretString="sk-old-0123456789")
            w = Watch(h, "--count", "2", "--timeout", "30", "prov/openai")
            w.wait_for("watching prov/openai", 15)
            sm.put_secret_value(SecretId="prov/openai", SecretString="sk-new-0123456789")
            ln, _ = w.wait_for("updated ", AWS_WAIT)
            assert ln == "updated prov/openai version=0"  # Secrets Manager's versions are ids
            sm.delete_secret(SecretId="prov/openai", RecoveryWindowInDays=7)
            ln, _ = w.wait_for("deleted ", AWS_WAIT)
            assert ln == "deleted prov/openai"
            rc, out, err = w.finish()
            assert rc == EXIT_OK, err
            assert "sk-old" not in out + err and "sk-new" not in out + err  # never a value
        finally:
            if w:
                w.kill()



def test_watch_aws_primary_secret_name(tmp_path):
    """LiteLLM's primary_secret_name: the provider keys are fields of one JSON secret. A rotation
    of one field made outside the host is told as that field's name (not the secret's, and not
    the fields that stayed the same); a field removed from the document is its deletion."""
    w = None
    doc = {"OPENAI_API_KEY": "sk-old-0123456789", "ANTHROPIC_API_KEY": "sk-ant-0123456789"}
    with aws_backend(tmp_path, {"access_mode": "read_and_write", "refresh_interval": INTERVAL,
                                "primary_secret_name": "litellm_secrets"}) as (h, sm):
        try:
            sm.create_secret(Name="litellm_secrets", SecretString=json.dumps(doc))
            w = Watch(h, "--count", "2", "--timeout", "30", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")
            w.wait_for("watching ANTHROPIC_API_KEY", 15)
            doc["OPENAI_API_KEY"] = "sk-new-0123456789"
            sm.put_secret_value(SecretId="litellm_secrets", SecretString=json.dumps(doc))
            ln, _ = w.wait_for("updated ", AWS_WAIT)
            assert ln == "updated OPENAI_API_KEY version=0"
            del doc["ANTHROPIC_API_KEY"]
            sm.put_secret_value(SecretId="litellm_secrets", SecretString=json.dumps(doc))
            ln, _ = w.wait_for("deleted ", AWS_WAIT)
            assert ln == "deleted ANTHROPIC_API_KEY"
            rc, out, err = w.finish()
            assert rc == EXIT_OK, err
            assert "litellm_secrets" not in out  # fields are told, not the document
            assert "sk-" not in out + err  # never a value
        finally:
            if w:
                w.kill()

def test_watch_config_references_and_timeout(tmp_path, vault):
    vault.write("OPENAI_API_KEY", "sk-provider-0123456789")
    h = vault_host(tmp_path, vault)
    p = h.run("watch", "--timeout", "1", check=EXIT_OK)
    assert p.stdout == "watching OPENAI_API_KEY version=1\n"
    p = h.run("watch", "--timeout", "1", "--count", "1", check=EXIT_FAIL)
    assert "0 of 1 change(s) seen within --timeout 1 s" in p.stderr


def test_watch_stops_on_sigterm(tmp_path, vault):
    vault.write("prov/a", "v1")
    h = vault_host(tmp_path, vault)
    w = Watch(h, "prov/a")
    try:
        w.wait_for("watching prov/a", 15)
        t0 = time.monotonic()
        w.p.send_signal(signal.SIGTERM)
        rc, _, err = w.finish()
        assert rc == EXIT_OK, err
        assert time.monotonic() - t0 < 5
    finally:
        w.kill()


def test_watch_needs_a_cache_and_background_refresh(tmp_path, vault):
    vault.write("prov/a", "v1")
    h = make_host(tmp_path, vault, {"access_mode": "read_only"})  # plugin_env: interval 0
    p = h.run("watch", "--timeout", "1", "prov/a", check=EXIT_CONFIG)
    assert "HCP_VAULT_REFRESH_INTERVAL" in p.stderr
    h = make_host(tmp_path, vault, {"background_refresh": "false"},
                  HCP_VAULT_REFRESH_INTERVAL=INTERVAL)
    p = h.run("watch", "--timeout", "1", "prov/a", check=EXIT_CONFIG)
    assert "background_refresh is 'false'" in p.stderr


def test_watch_plugin_without_notifications(tmp_path):
    h = make_host(tmp_path, settings={}, kms="env")
    p = h.run("watch", "--timeout", "1", "HOME", check=EXIT_UNSUPPORTED)
    assert "plugin 'env' does not report changes" in p.stderr


def test_watch_usage(tmp_path, vault):
    h = vault_host(tmp_path, vault)
    for args in (["--count"], ["--count", "0"], ["--timeout", "x"], ["a", "--count", "1"],
                 ["--bogus"]):
        assert "usage: kms-host --config FILE watch" in h.run("watch", *args,
                                                              check=EXIT_USAGE).stderr


# --- reconcile ----------------------------------------------------------------------

def gen(h, alias, check=EXIT_OK):
    return parse_fields(h.run("key", "generate", "--alias", alias, check=check).stdout)


def test_reconcile_consistent(tmp_path, vault):
    h = make_host(tmp_path, vault)
    gen(h, "a")
    gen(h, "team/b")
    p = h.run("reconcile", check=EXIT_OK)
    assert "location default prefix=litellm/ listed=2 keys=2" in p.stdout
    assert p.stdout.endswith("result: consistent\n")
    j = json.loads(h.run("reconcile", "--json", check=EXIT_OK).stdout)
    assert j["result"] == "consistent" and j["orphans"] == [] and j["missing"] == []
    assert j["locations"] == [{"location": None, "listed": 2, "keys": 2, "teams": []}]


def test_reconcile_finds_orphan_and_missing(tmp_path, vault):
    h = make_host(tmp_path, vault)
    gen(h, "a")
    gen(h, "b")
    vault.write("litellm/stray", "sk-made-by-hand")        # no key owns it
    assert vault.request("DELETE", "/v1/secret/data/litellm/a")[0] in (200, 204)  # soft delete
    p = h.run("reconcile", check=EXIT_FAIL)
    assert "orphan litellm/stray at default: no key owns it -- kept" in p.stdout
    assert "missing litellm/a at default: key " in p.stdout and "-- lost" in p.stdout
    assert "kms-host key regenerate --alias a" in p.stdout
    assert "2 difference(s) remain: 1 orphan(s), 1 key(s) whose secret is lost" in p.stderr
    assert "sk-made-by-hand" not in p.stdout + p.stderr
    j = json.loads(h.run("reconcile", "--json", check=EXIT_FAIL).stdout)
    assert j["result"] == "differences"
    assert [(o["name"], o["state"]) for o in j["orphans"]] == [("litellm/stray", "kept")]
    assert [(m["name"], m["alias"], m["state"]) for m in j["missing"]] == [("litellm/a", "a",
                                                                           "lost")]
    assert "regenerate --alias a" in j["missing"][0]["fix"]
    # the fix it names works: a new value lands under the same name
    h.run("key", "regenerate", "--alias", "a", check=EXIT_OK)
    assert vault.read("litellm/a") is not None
    assert vault.read("litellm/stray") == "sk-made-by-hand"  # reconcile alone deletes nothing


def test_reconcile_soft_deleted_secret_is_no_orphan(tmp_path, vault):
    # A Vault LIST still shows a soft-deleted secret: a read decides.
    h = make_host(tmp_path, vault)
    gen(h, "gone")
    h.run("key", "delete", "--alias", "gone", check=EXIT_OK)
    assert vault.request("GET", "/v1/secret/metadata/litellm/gone")[0] == 200
    assert h.run("reconcile", check=EXIT_OK).stdout.endswith("result: consistent\n")


def test_reconcile_delete_orphans_through_the_outbox(tmp_path, vault):
    h = make_host(tmp_path, vault)
    gen(h, "keep")
    vault.write("litellm/stray", "x")
    p = h.run("reconcile", "--delete-orphans", check=EXIT_OK)
    assert "orphan litellm/stray at default: no key owns it -- deleted" in p.stdout
    assert vault.read("litellm/stray") is None and vault.read("litellm/keep") is not None
    assert outbox(tmp_path) == []
    h.run("reconcile", check=EXIT_OK)


def test_reconcile_aws_secret_manager(tmp_path):
    """reconcile with aws_secret_manager (ListSecrets): an orphan made with boto3 under the
    virtual-key prefix is found and, with --delete-orphans, deleted; a key whose secret is
    scheduled for deletion is missing; a secret outside the prefix is not looked at."""
    with aws_backend(tmp_path, KEYS) as (h, sm):
        gen(h, "a")
        gen(h, "b")
        sm.create_secret(Name="litellm/stray", SecretString="sk-made-by-hand")
        sm.create_secret(Name="other/x", SecretString="x")
        sm.delete_secret(SecretId="litellm/b", RecoveryWindowInDays=7)
        p = h.run("reconcile", check=EXIT_FAIL)
        assert "orphan litellm/stray at default: no key owns it -- kept" in p.stdout
        assert "missing litellm/b at default: key " in p.stdout
        assert "other/x" not in p.stdout and "sk-made-by-hand" not in p.stdout + p.stderr
        h.run("key", "regenerate", "--alias", "b", check=EXIT_OK)  # restores and overwrites
        p = h.run("reconcile", "--delete-orphans", check=EXIT_OK)
        assert "orphan litellm/stray at default: no key owns it -- deleted" in p.stdout
        assert "DeletedDate" in sm.describe_secret(SecretId="litellm/stray")
        assert outbox(tmp_path) == []
        assert h.run("reconcile", check=EXIT_OK).stdout.endswith("result: consistent\n")


def test_reconcile_delete_orphans_spares_a_key_made_meanwhile(tmp_path, vault):
    """The race --delete-orphans must not lose: a key whose secret name is an
    orphan's is generated (by serve, which commits without the delivery lock)
    after reconcile listed and compared, and before it enqueues the delete.
    The ownership check inside the enqueue's transaction sees the key, so
    its secret is written and never deleted; the other orphan is deleted."""
    sys.path.insert(0, str(SRC / "tests" / "host_serve"))
    from serve_helpers import Serve, wait_until, write_config  # noqa: E402
    cfg = write_config(tmp_path)  # the same config (and store) for serve and reconcile
    vault.write("litellm/race", "sk-left-behind-by-hand")
    vault.write("litellm/stray", "x")
    gate = tmp_path / "pause"
    gate.write_text("")
    env = vault.plugin_env(KMS_HOST_TEST_RECONCILE_PAUSE=str(gate))
    s = Serve(cfg, vault.plugin_env(), args=("--deliver-wait-ms", "200"))
    rec = None
    try:
        rec = subprocess.Popen([str(HOST), "--config", str(cfg), "--plugin-dir", str(PLUGIN_DIR),
                                "reconcile", "--delete-orphans", "--json"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        paused = tmp_path / "pause.paused"
        assert wait_until(lambda: paused.exists() or rec.poll() is not None, timeout=60)
        assert rec.poll() is None, rec.communicate()
        st, k = s.call("POST", "/key/generate", {"key_alias": "race"})
        assert st == 200, k
        os.unlink(gate)
        out, err = rec.communicate(timeout=120)
        assert rec.returncode == 0, (out, err)
        j = json.loads(out)
        assert {o["name"]: o["state"] for o in j["orphans"]} == {"litellm/race": "now_owned",
                                                                 "litellm/stray": "deleted"}, j
        assert wait_until(lambda: vault.read("litellm/race") == k["key"], timeout=30)
        assert vault.read("litellm/stray") is None
        assert ("delete", "litellm/race") not in outbox(tmp_path)
        assert wait_until(lambda: outbox(tmp_path) == [], timeout=30)
        assert vault.read("litellm/race") == k["key"]  # no delete came after the write
    finally:
        if rec is not None and rec.poll() is None:
            rec.kill()
            rec.wait()
        assert s.stop() == 0


def test_reconcile_delete_orphans_queues_while_vault_refuses(tmp_path, vault):
    h = make_host(tmp_path, vault)
    vault.write("litellm/stray", "x")
    # Vault answers "sealed" to deletes of that secret only: the listing works, the
    # delete fails, and it must stay queued rather than be lost
    fault = {"method": "DELETE", "path": "^/v1/secret/(data|metadata)/litellm/stray",
             "status": 503, "body": {"errors": ["Vault is sealed"]}, "times": -1}
    assert vault.request("POST", "/__test__/faults", fault)[0] == 200
    p = h.run("reconcile", "--delete-orphans", check=EXIT_QUEUED)
    assert "orphan litellm/stray at default: no key owns it -- delete_queued" in p.stdout
    assert "run `kms-host sync`" in p.stderr
    assert outbox(tmp_path) == [("delete", "litellm/stray")]
    assert vault.read("litellm/stray") == "x"
    # a second run sees the queued delete and tries again (still refused)
    p = h.run("reconcile", check=EXIT_QUEUED)
    assert "(its delete was queued as #" in p.stdout
    assert vault.request("DELETE", "/__test__/faults")[0] == 200
    assert "delivered: 1" in h.run("sync", check=EXIT_OK).stdout
    assert vault.read("litellm/stray") is None and outbox(tmp_path) == []
    h.run("reconcile", check=EXIT_OK)


def test_reconcile_redelivers_a_queued_write(tmp_path, vault):
    h = make_host(tmp_path, vault)
    vault.seal()
    g = gen(h, "late", check=EXIT_QUEUED)
    vault.seal(False)
    assert vault.read("litellm/late") is None
    p = h.run("reconcile", check=EXIT_OK)
    assert "missing litellm/late at default: key " in p.stdout
    assert "(its write was queued as #" in p.stdout and "-- redelivered" in p.stdout
    assert vault.read("litellm/late") == g["key"] and outbox(tmp_path) == []


def test_reconcile_vault_unreachable(tmp_path, vault):
    h = make_host(tmp_path, vault)
    gen(h, "a")
    vault.write("litellm/stray", "x")
    vault.seal()
    p = h.run("reconcile", "--delete-orphans", check=EXIT_BACKEND)
    assert "cannot list the secrets under litellm/" in p.stderr
    assert "nothing was compared or changed" in p.stderr and outbox(tmp_path) == []


def test_reconcile_plugin_that_cannot_list(tmp_path):
    h = make_host(tmp_path, settings={}, kms="v10", plugin_dir=ABI_PLUGIN_DIR)
    p = h.run("reconcile", check=EXIT_UNSUPPORTED)
    assert "cannot list secrets" in p.stderr


def test_reconcile_usage(tmp_path, vault):
    h = make_host(tmp_path, vault)
    assert "usage: kms-host --config FILE reconcile" in h.run("reconcile", "--bogus",
                                                              check=EXIT_USAGE).stderr
    assert "6 the secret manager could not be listed" in h.run("reconcile", "--help",
                                                               check=EXIT_OK).stdout
