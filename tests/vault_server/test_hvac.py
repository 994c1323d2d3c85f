"""Drive the test server with hvac (Debian python3-hvac), an independent Vault client."""

import sys

import pytest

try:
    import hvac
    from hvac import exceptions
except ImportError:  # a missing client fails the suite, it never skips it green
    pytest.fail("python3-hvac is missing on %s: install it (scripts/deps test)" % sys.executable,
                pytrace=False)


@pytest.fixture
def client(http_server):
    cl = hvac.Client(url=http_server.url, token="root")
    yield cl
    cl.adapter.close()


@pytest.fixture
def tls_client(tls_server, certs):
    cl = hvac.Client(url=tls_server.url, token="root", verify=certs["ca.pem"])
    yield cl
    cl.adapter.close()


def test_health_and_auth(client):
    assert client.is_authenticated()
    assert client.sys.is_initialized()
    assert not client.sys.is_sealed()
    assert client.sys.read_health_status(method="GET")["initialized"] is True
    bad = hvac.Client(url=client.url, token="nope")
    assert not bad.is_authenticated()


def test_kv2_write_read_versions(client, uniq):
    kv = client.secrets.kv.v2
    r = kv.create_or_update_secret(path=uniq, secret={"user": "a", "pw": "1"})
    assert r["data"]["version"] == 1
    kv.create_or_update_secret(path=uniq, secret={"user": "a", "pw": "2"})
    assert kv.read_secret_version(path=uniq)["data"]["data"] == {"user": "a", "pw": "2"}
    assert kv.read_secret_version(path=uniq, version=1)["data"]["data"]["pw"] == "1"
    with pytest.raises(exceptions.InvalidPath):
        kv.read_secret_version(path=uniq + "-missing")


def test_kv2_cas_and_patch(client, uniq):
    kv = client.secrets.kv.v2
    kv.create_or_update_secret(path=uniq, secret={"a": 1}, cas=0)
    with pytest.raises(exceptions.InvalidRequest) as ei:
        kv.create_or_update_secret(path=uniq, secret={"a": 2}, cas=0)
    assert "check-and-set parameter did not match the current version" in str(ei.value)
    r = kv.patch(path=uniq, secret={"b": 2})
    assert r["data"]["version"] == 2
    assert kv.read_secret_version(path=uniq)["data"]["data"] == {"a": 1, "b": 2}


def test_kv2_delete_undelete_destroy(client, uniq):
    kv = client.secrets.kv.v2
    kv.create_or_update_secret(path=uniq, secret={"v": 1})
    kv.create_or_update_secret(path=uniq, secret={"v": 2})
    kv.delete_latest_version_of_secret(path=uniq)
    with pytest.raises(exceptions.InvalidPath):
        kv.read_secret_version(path=uniq)
    kv.undelete_secret_versions(path=uniq, versions=[2])
    assert kv.read_secret_version(path=uniq)["data"]["data"] == {"v": 2}
    kv.delete_secret_versions(path=uniq, versions=[1])
    kv.destroy_secret_versions(path=uniq, versions=[2])
    meta = kv.read_secret_metadata(path=uniq)["data"]
    assert meta["versions"]["1"]["deletion_time"] != ""
    assert meta["versions"]["2"]["destroyed"] is True
    kv.delete_metadata_and_all_versions(path=uniq)
    with pytest.raises(exceptions.InvalidPath):
        kv.read_secret_metadata(path=uniq)


def test_kv2_metadata_and_list(client, uniq):
    kv = client.secrets.kv.v2
    for k in ("x", "y/z"):
        kv.create_or_update_secret(path="%s/%s" % (uniq, k), secret={"k": k})
    assert kv.list_secrets(path=uniq)["data"]["keys"] == ["x", "y/"]
    kv.update_metadata(path=uniq + "/x", max_versions=3, cas_required=True)
    meta = kv.read_secret_metadata(path=uniq + "/x")["data"]
    assert meta["max_versions"] == 3 and meta["cas_required"] is True
    with pytest.raises(exceptions.InvalidRequest):
        kv.create_or_update_secret(path=uniq + "/x", secret={"k": 1})
    with pytest.raises(exceptions.InvalidPath):
        kv.list_secrets(path=uniq + "/none")


def test_kv1_read_on_kv2_mount_reports_versioned_engine(client, uniq):
    # hvac users (and the Vault CLI) tell a v2 mount from a v1 one by this 404's warning
    client.secrets.kv.v2.create_or_update_secret(path=uniq, secret={"a": 1})
    with pytest.raises(exceptions.InvalidPath) as ei:
        client.secrets.kv.v1.read_secret(path=uniq, mount_point="secret")
    assert "Invalid path for a versioned K/V secrets engine" in str(ei.value)
    assert "'vault kv get'" in str(ei.value)
    with pytest.raises(exceptions.InvalidPath) as ei:
        client.secrets.kv.v1.create_or_update_secret(path=uniq, secret={"a": 2}, mount_point="secret")
    assert "'vault kv put'" in str(ei.value)


def test_kv2_oldest_version(client, uniq):
    kv = client.secrets.kv.v2
    kv.update_metadata(path=uniq, max_versions=2)
    for i in range(2):
        kv.create_or_update_secret(path=uniq, secret={"i": i})
    meta = kv.read_secret_metadata(path=uniq)["data"]
    assert (meta["current_version"], meta["oldest_version"]) == (2, 1)
    kv.create_or_update_secret(path=uniq, secret={"i": 2})
    meta = kv.read_secret_metadata(path=uniq)["data"]
    assert (meta["oldest_version"], sorted(meta["versions"])) == (2, ["2", "3"])


def test_kv2_mount_and_config(client, uniq):
    client.sys.enable_secrets_engine(backend_type="kv", path=uniq, options={"version": "2"})
    assert uniq + "/" in client.sys.list_mounted_secrets_engines()["data"]
    kv = client.secrets.kv.v2
    kv.configure(max_versions=2, mount_point=uniq)
    assert kv.read_configuration(mount_point=uniq)["data"]["max_versions"] == 2
    for i in range(3):
        kv.create_or_update_secret(path="p", secret={"i": i}, mount_point=uniq)
    assert sorted(kv.read_secret_metadata(path="p", mount_point=uniq)["data"]["versions"]) == ["2", "3"]
    client.sys.disable_secrets_engine(path=uniq)


def test_tokens(client):
    r = client.auth.token.create(policies=["p1"], ttl="1h", explicit_max_ttl="2h")
    tok = r["auth"]["client_token"]
    assert r["auth"]["policies"] == ["default", "p1"]
    assert client.auth.token.lookup(tok)["data"]["ttl"] <= 3600
    user = hvac.Client(url=client.url, token=tok)
    assert user.auth.token.lookup_self()["data"]["id"] == tok
    r = user.auth.token.renew_self(increment="30m")
    assert r["auth"]["lease_duration"] == 1800
    user.auth.token.revoke_self()
    assert not user.is_authenticated()
    with pytest.raises(exceptions.InvalidRequest):
        client.auth.token.renew_self()  # root: lease is not renewable
    user.adapter.close()


def test_policies(client, uniq):
    client.sys.create_or_update_policy(name=uniq, policy='path "secret/data/%s" { capabilities = ["read"] }' % uniq)
    assert uniq in client.sys.list_policies()["data"]["policies"]
    assert "capabilities" in client.sys.read_policy(name=uniq)["data"]["rules"]
    client.secrets.kv.v2.create_or_update_secret(path=uniq, secret={"a": 1})
    tok = client.auth.token.create(policies=[uniq])["auth"]["client_token"]
    user = hvac.Client(url=client.url, token=tok)
    assert user.secrets.kv.v2.read_secret_version(path=uniq)["data"]["data"] == {"a": 1}
    with pytest.raises(exceptions.Forbidden):
        user.secrets.kv.v2.create_or_update_secret(path=uniq, secret={"a": 2})
    client.sys.delete_policy(name=uniq)
    assert uniq not in client.sys.list_policies()["data"]["policies"]
    with pytest.raises(exceptions.Forbidden):
        user.secrets.kv.v2.read_secret_version(path=uniq)
    user.adapter.close()


def test_approle_login(client, uniq):
    mp = "approle-" + uniq
    client.sys.enable_auth_method(method_type="approle", path=mp)
    assert mp + "/" in client.sys.list_auth_methods()["data"]
    client.sys.create_or_update_policy(name=uniq, policy='path "secret/data/%s" { capabilities = ["read"] }' % uniq)
    client.auth.approle.create_or_update_approle(role_name="svc", token_policies=[uniq], token_ttl="15m",
                                                 mount_point=mp)
    role_id = client.auth.approle.read_role_id(role_name="svc", mount_point=mp)["data"]["role_id"]
    secret_id = client.auth.approle.generate_secret_id(role_name="svc", mount_point=mp)["data"]["secret_id"]
    app = hvac.Client(url=client.url)
    r = app.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=mp)
    assert r["auth"]["lease_duration"] == 900 and app.is_authenticated()
    client.secrets.kv.v2.create_or_update_secret(path=uniq, secret={"ok": 1})
    assert app.secrets.kv.v2.read_secret_version(path=uniq)["data"]["data"] == {"ok": 1}
    with pytest.raises(exceptions.InvalidRequest) as ei:
        hvac.Client(url=client.url).auth.approle.login(role_id=role_id, secret_id="wrong", mount_point=mp)
    assert "invalid role or secret ID" in str(ei.value)
    client.sys.disable_auth_method(path=mp)
    app.adapter.close()


def test_cert_login_mtls(tls_client, tls_server, certs, uniq):
    mp = "cert-" + uniq
    tls_client.sys.enable_auth_method(method_type="cert", path=mp)
    tls_client.sys.create_or_update_policy(name=uniq, policy='path "secret/data/%s" { capabilities = ["read"] }' % uniq)
    tls_client.auth.cert.create_ca_certificate_role(name="web", certificate=certs["ca.pem"],
                                                    token_policies=[uniq], token_ttl=300, mount_point=mp)
    assert tls_client.auth.cert.read_ca_certificate_role(name="web", mount_point=mp)["data"]["token_ttl"] == 300
    tls_client.secrets.kv.v2.create_or_update_secret(path=uniq, secret={"mtls": True})

    user = hvac.Client(url=tls_server.url, verify=certs["ca.pem"], cert=(certs["client.pem"], certs["client.key"]))
    # (hvac 0.11 validates an explicit cacert as PEM text; it falls back to the adapter's verify)
    r = user.auth.cert.login(name="web", cert_pem=certs["client.pem"],
                             key_pem=certs["client.key"], mount_point=mp)
    assert r["auth"]["policies"] == ["default", uniq] and r["auth"]["lease_duration"] == 300
    assert user.is_authenticated()
    assert user.secrets.kv.v2.read_secret_version(path=uniq)["data"]["data"] == {"mtls": True}

    anon = hvac.Client(url=tls_server.url, verify=certs["ca.pem"])
    with pytest.raises(exceptions.InvalidRequest) as ei:
        anon.adapter.post("/v1/auth/%s/login" % mp, json={"name": "web"})
    assert "client certificate must be supplied" in str(ei.value)
    user.adapter.close()
    anon.adapter.close()


def test_namespaces(client, uniq):
    client.sys.create_namespace(path=uniq)
    assert uniq + "/" in client.sys.list_namespaces()["data"]["keys"]
    ns = hvac.Client(url=client.url, token="root", namespace=uniq)
    ns.secrets.kv.v2.create_or_update_secret(path="in-ns", secret={"ns": uniq})
    assert ns.secrets.kv.v2.read_secret_version(path="in-ns")["data"]["data"] == {"ns": uniq}
    with pytest.raises(exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_version(path="in-ns")
    tok = ns.auth.token.create(policies=["default"])["auth"]["client_token"]
    nsuser = hvac.Client(url=client.url, token=tok, namespace=uniq)
    assert nsuser.is_authenticated()
    assert not hvac.Client(url=client.url, token=tok).is_authenticated()
    # the startup namespace from the CLI
    t1 = hvac.Client(url=client.url, token="root", namespace="team1/sub")
    t1.secrets.kv.v2.create_or_update_secret(path=uniq, secret={"deep": 1})
    assert t1.secrets.kv.v2.read_secret_version(path=uniq)["data"]["data"] == {"deep": 1}
    ns.adapter.close()
    nsuser.adapter.close()
    t1.adapter.close()


def test_sealed_server_raises_vault_down(start_server):
    srv = start_server("--test-controls")
    cl = srv.client()
    cl.control("POST", "seal", {"sealed": True})
    hv = hvac.Client(url=srv.url, token="root")
    assert hv.sys.is_sealed()
    with pytest.raises(exceptions.VaultDown):
        hv.secrets.kv.v2.read_secret_version(path="x")
    cl.close()
    hv.adapter.close()


def test_token_expiry_seen_by_hvac(start_server):
    srv = start_server("--test-controls")
    root = hvac.Client(url=srv.url, token="root")
    tok = root.auth.token.create(policies=["default"], ttl="1s")["auth"]["client_token"]
    user = hvac.Client(url=srv.url, token=tok)
    assert user.is_authenticated()
    cl = srv.client()
    cl.control("POST", "clock", {"advance": 1.5})   # the server's time, instead of sleeping
    cl.close()
    assert not user.is_authenticated()
    user.adapter.close()
    root.adapter.close()
