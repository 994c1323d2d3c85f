"""Vault's own test controls (under /__test__/, beside testserver's faults,
request log and stats): seal, standby, the clock, and expiring or revoking
tokens.

Thread safety: each control takes Vault.lock.
"""


from testserver.controls import bool_field, int_field

from . import clock
from .base import bad


def control(vault, method, path, data):
    """One Vault control (path without /__test__/): a JSON-able dict, or None if unknown."""
    if method not in ("POST", "PUT"):
        return None
    if path == "seal":
        with vault.lock:
            vault.sealed = bool_field(data, "sealed", True)
            return {"sealed": vault.sealed}
    if path == "standby":
        target = data.get("redirect_to")
        with vault.lock:
            if target:
                vault.standby = (str(target), int_field(data, "status", 307) or 307)
            else:
                vault.standby = None
            return {"standby": vault.standby is not None}
    if path == "clock":
        seconds = data.get("advance", 0)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise bad('"advance" must be a number of seconds >= 0')
        return {"now": clock.advance(seconds)}
    if path in ("tokens/expire", "tokens/revoke"):
        with vault.lock:
            return {"affected": expire_or_revoke(vault, data, path.rsplit("/", 1)[1])}
    return None


def expire_or_revoke(vault, body, action):
    """Expires ("expire") or revokes the tokens body names; returns how many."""
    if body.get("all_non_root"):
        targets = [t for t in vault.tokens.values() if "root" not in t.policies]
    elif body.get("token"):
        t = vault.tokens.get(str(body["token"]))
        targets = [t] if t else []
    elif body.get("accessor"):
        t = vault.by_accessor.get(str(body["accessor"]))
        targets = [t] if t else []
    else:
        raise bad("one of token, accessor or all_non_root is required")
    now = clock.now()
    for t in targets:
        if action == "expire":
            t.expire_at = now - 0.001
        else:
            vault.revoke_token(t)
    return len(targets)
