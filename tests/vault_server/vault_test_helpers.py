"""Constants and helpers shared by the raw-HTTP suites of tests/vault_server."""

DENIED = "1 error occurred:\n\t* permission denied\n\n"


INVALID_TOKEN = "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"


ENVELOPE_KEYS = {"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info",
                 "warnings", "auth"}


def make_token(c, policies, **kw):
    body = {"policies": policies}
    body.update(kw)
    r = c.post("auth/token/create", body)
    assert r.status == 200, r
    return r.json["auth"]["client_token"]


def put_policy(c, name, text, ns=None):
    r = c.req("PUT", "sys/policies/acl/" + name, {"policy": text}, ns=ns)
    assert r.status == 204, r
