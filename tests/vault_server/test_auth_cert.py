"""Cert auth (TLS client certificates) of the Vault test server (vaultsim/auth_cert.py).

Expected status codes and bodies follow HashiCorp Vault's HTTP API.
"""

import ssl

import pytest

from vault_test_helpers import put_policy


def test_cert_auth_over_mtls(tls_server, certs, uniq):
    admin = tls_server.client()
    mp = "cert" + uniq
    assert admin.post("sys/auth/" + mp, {"type": "cert"}).status == 204
    put_policy(admin, uniq, 'path "secret/data/%s" { capabilities = ["read"] }' % uniq)
    ca = open(certs["ca.pem"]).read()
    r = admin.post("auth/%s/certs/web" % mp, {"certificate": ca, "token_policies": uniq, "token_ttl": 600,
                                               "allowed_common_names": ["kmsplug-*"]})
    assert r.status == 204
    d = admin.get("auth/%s/certs/web" % mp).data
    assert d["token_policies"] == [uniq] and d["token_ttl"] == 600 and d["certificate"] == ca
    admin.post("auth/%s/certs/strict" % mp, {"certificate": ca, "allowed_common_names": "someone-else"})
    admin.post("secret/data/" + uniq, {"data": {"tls": 1}})

    cl = tls_server.client(certs["client.pem"], certs["client.key"])
    r = cl.post("auth/%s/login" % mp, {"name": "web"}, token="")
    assert r.status == 200, r
    a = r.json["auth"]
    assert a["policies"] == ["default", uniq] and a["lease_duration"] == 600 and a["renewable"] is True
    assert a["metadata"]["cert_name"] == "web" and a["metadata"]["common_name"] == "kmsplug-client"
    assert cl.get("secret/data/" + uniq, token=a["client_token"]).data["data"] == {"tls": 1}
    # without a role name: any matching role
    r = cl.post("auth/%s/login" % mp, {}, token="")
    assert r.status == 200 and r.json["auth"]["metadata"]["cert_name"] == "web"
    r = cl.post("auth/%s/login" % mp, {"name": "strict"}, token="")
    assert r.status == 400
    assert r.errors == ["no chain matching all constraints could be found for this login certificate"]
    r = cl.post("auth/%s/login" % mp, {"name": "missing"}, token="")
    assert r.status == 400 and r.errors == ["invalid certificate or no client certificate supplied"]
    cl.close()
    # no client certificate at all
    r = admin.post("auth/%s/login" % mp, {"name": "web"}, token="")
    assert r.status == 400 and r.errors == ["client certificate must be supplied"]
    # a role trusting only the leaf certificate itself
    admin.post("auth/%s/certs/leaf" % mp, {"certificate": open(certs["client.pem"]).read()})
    cl = tls_server.client(certs["client.pem"], certs["client.key"])
    assert cl.post("auth/%s/login" % mp, {"name": "leaf"}, token="").status == 200
    cl.close()
    # a role trusting another CA does not accept our client cert
    admin.post("auth/%s/certs/other" % mp, {"certificate": open(certs["other-ca.pem"]).read()})
    cl = tls_server.client(certs["client.pem"], certs["client.key"])
    r = cl.post("auth/%s/login" % mp, {"name": "other"}, token="")
    assert r.status == 400 and r.errors == ["invalid certificate or no client certificate supplied"]
    cl.close()
    r = admin.post("auth/%s/certs/bad" % mp, {"certificate": "not a pem"})
    assert r.status == 400
    admin.close()


def test_tls_rejects_untrusted_and_expired_client_certs(tls_server, certs):
    for name in ("untrusted-client", "expired-client"):
        cl = tls_server.client(certs[name + ".pem"], certs[name + ".key"])
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            cl.get("sys/health", token="")
        cl.close()
    with pytest.raises(ssl.SSLError):
        tls_server.client(certs["client.pem"], certs["wrong-key.pem"])._connect()


def test_cert_login_over_plain_http(c, uniq):
    mp = "cert" + uniq
    c.post("sys/auth/" + mp, {"type": "cert"})
    r = c.post("auth/%s/login" % mp, {}, token="")
    assert r.status == 400 and r.errors == ["tls connection required"]
