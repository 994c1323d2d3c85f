"""The token auth method (auth/token/...), login-token issuing for the other
methods, and the token_* role fields they share (Vault's tokenutil).

Thread safety: called with Vault.lock held (core.Vault.handle).
"""

import re

from testserver.core import Response

from . import clock
from .api import Route, ok
from .base import SYS_DEFAULT_TTL, SYS_MAX_TTL, VaultError, bad, not_found, unsupported_op, unsupported_path
from .convert import go_duration, new_uuid, parse_duration, sanitize_policies, to_bool, to_int, to_strlist, to_strmap
from .model import Token


class TokenMixin:
    """auth/token/ and the token fields of roles (mixed into core.Vault)."""

    def route_token(self, req, sub, op):
        R = Route
        sub = sub.rstrip("/") if sub not in ("",) else sub
        if sub in ("create", "create-orphan"):
            return R(lambda: self.token_create(req, orphan=sub == "create-orphan") if op == "update" else unsupported_op(), op)
        if sub == "lookup-self":
            return R(lambda: self.token_lookup(req.token) if op == "read" else unsupported_op(), op)
        if sub == "lookup" or sub.startswith("lookup/"):
            def lookup():
                if op not in ("read", "update"):
                    unsupported_op()
                tid = sub[len("lookup/"):] if sub.startswith("lookup/") else str(req.data.get("token", "") or "")
                t = self.tokens.get(tid) if tid else req.token
                if t is None or t.expired():
                    raise VaultError(403, ["bad token"])
                return self.token_lookup(t)
            return R(lookup, op)
        if sub == "lookup-accessor":
            def lookup_acc():
                if op != "update":
                    unsupported_op()
                t = self.by_accessor.get(str(req.data.get("accessor", "")))
                if t is None or t.expired():
                    raise bad("invalid accessor")
                resp = self.token_lookup(t)
                resp.body["data"]["id"] = ""
                return resp
            return R(lookup_acc, op)
        if sub == "renew-self":
            return R(lambda: self.token_renew(req.token, req) if op == "update" else unsupported_op(), op)
        if sub == "renew":
            def renew():
                if op != "update":
                    unsupported_op()
                t = self.tokens.get(str(req.data.get("token", "") or ""))
                if t is None or t.expired():
                    raise bad("token not found")
                return self.token_renew(t, req)
            return R(renew, op)
        if sub == "revoke-self":
            def revoke_self():
                if op != "update":
                    unsupported_op()
                self.revoke_token(req.token)
                return Response(204)
            return R(revoke_self, op)
        if sub in ("revoke", "revoke-orphan"):
            def revoke():
                if op != "update":
                    unsupported_op()
                tid = str(req.data.get("token", "") or "")
                if not tid:
                    raise bad("missing token ID")
                t = self.tokens.get(tid)
                if t is not None:
                    self.revoke_token(t)
                return Response(204)
            return R(revoke, op)
        if sub == "revoke-accessor":
            def revoke_acc():
                if op != "update":
                    unsupported_op()
                t = self.by_accessor.get(str(req.data.get("accessor", "")))
                if t is None:
                    raise bad("invalid accessor")
                self.revoke_token(t)
                return Response(204)
            return R(revoke_acc, op)
        if sub == "accessors":
            def accessors():
                if op != "list":
                    unsupported_op()
                keys = sorted(a for a, t in self.by_accessor.items() if t.ns is req.ns)
                return ok({"keys": keys}, mount_type="token")
            return R(accessors, op, sudo=True)
        return R(unsupported_path, op)

    def token_lookup(self, t):
        return ok(t.lookup_data(), mount_type="token")

    def token_create(self, req, orphan=False):
        d = req.data
        parent = req.token
        parent_root = "root" in parent.policies
        if "policies" in d and d["policies"] is not None:
            requested = to_strlist(d["policies"], "policies", lower=True)
        else:
            requested = [p for p in parent.policies]
        no_default = to_bool(d.get("no_default_policy", False), "no_default_policy")
        if not parent_root:
            for p in requested:
                if p != "default" and p not in parent.policies:
                    raise bad("child policies must be subset of parent")
        if "default" in requested and no_default:
            requested = [p for p in requested if p != "default"]
        policies = sanitize_policies(requested, not no_default)
        if not policies:
            raise bad("token must have at least one policy")
        ttl = parse_duration(d.get("ttl", d.get("lease")), "ttl")
        explicit = parse_duration(d.get("explicit_max_ttl"), "explicit_max_ttl")
        period = parse_duration(d.get("period"), "period")
        if ttl < 0 or explicit < 0 or period < 0:
            raise bad("ttl must be positive")
        renewable = to_bool(d.get("renewable", True), "renewable")
        num_uses = to_int(d.get("num_uses", 0), "num_uses")
        if num_uses < 0:
            raise bad("number of uses cannot be negative")
        no_parent = to_bool(d.get("no_parent", False), "no_parent")
        if no_parent and not parent_root:
            raise bad("root or sudo privileges required to create orphan token")
        tid = d.get("id")
        if tid:
            if not parent_root:
                raise bad("root or sudo privileges required to specify token id")
            tid = str(tid)
            if "." in tid:
                raise bad("token IDs can not contain periods")
            if tid in self.tokens:
                raise bad("cannot create a token with a duplicate ID")
        else:
            tid = self.new_token_id(req.ns)
        meta = to_strmap(d.get("meta"), "meta")
        name = str(d.get("display_name", "") or "")
        display = "token" if not name else "token-" + re.sub(r"[^a-zA-Z0-9-]", "-", name).lower()
        if policies == ["root"] and ttl == 0 and explicit == 0 and period == 0:
            ttl = 0
        else:
            if period:
                ttl = period
            elif ttl == 0:
                ttl = SYS_DEFAULT_TTL
            if explicit and ttl > explicit:
                ttl = explicit
            if not period and ttl > SYS_MAX_TTL:
                ttl = SYS_MAX_TTL
        t = Token(tid, req.ns, policies, ttl=ttl, explicit_max_ttl=explicit, renewable=renewable and ttl > 0,
                  num_uses=num_uses, display_name=display, meta=meta,
                  path="auth/token/create-orphan" if orphan else "auth/token/create",
                  orphan=orphan or no_parent, period=period,
                  parent=None if (orphan or no_parent) else parent.id)
        self._add_token(t)
        return ok(None, auth=t.auth_block(), mount_type="token")

    def token_renew(self, t, req):
        if t.expire_at is None or not t.renewable:
            raise bad("lease is not renewable")
        inc = parse_duration(req.data.get("increment"), "increment")
        now = clock.now()
        if t.period:
            new_ttl = t.period
        else:
            new_ttl = inc if inc > 0 else t.ttl
        limits = [x for x in (t.explicit_max_ttl, (t.max_ttl or SYS_MAX_TTL) if not t.period else 0) if x]
        warnings = None
        if limits:
            max_abs = t.created + min(limits)
            if now + new_ttl > max_abs:
                capped = max(0, int(max_abs - now))
                warnings = ['TTL of "%s" exceeded the effective max_ttl of "%s"; TTL value is capped accordingly'
                            % (go_duration(new_ttl), go_duration(capped))]
                new_ttl = capped
        t.expire_at = now + new_ttl
        t.last_renewal = now
        return ok(None, warnings, auth=t.auth_block(), mount_type="token")

    def issue_login_token(self, ns, am, role, display_name, metadata):
        policies = sanitize_policies(role.get("token_policies", []), not role.get("token_no_default_policy", False))
        max_ttl = role.get("token_max_ttl", 0) or am.max_lease_ttl or SYS_MAX_TTL
        explicit = role.get("token_explicit_max_ttl", 0)
        period = role.get("token_period", 0)
        ttl = period or role.get("token_ttl", 0) or am.default_lease_ttl or SYS_DEFAULT_TTL
        ttl = min(ttl, max_ttl) if not period else ttl
        if explicit:
            ttl = min(ttl, explicit)
        t = Token(self.new_token_id(ns), ns, policies, ttl=ttl, explicit_max_ttl=explicit,
                  max_ttl=max_ttl, renewable=True, num_uses=role.get("token_num_uses", 0),
                  display_name=display_name, meta=metadata, path="auth/%slogin" % am.path,
                  orphan=True, period=period, auth_mount=(ns, am.path))
        t.entity_id = new_uuid()
        self._add_token(t)
        return ok(None, auth=t.auth_block(metadata), mount_type=am.type)

    # shared token_* role fields (tokenutil)
    TOKEN_FIELDS = ("token_policies", "policies", "token_ttl", "ttl", "token_max_ttl", "max_ttl",
                    "token_explicit_max_ttl", "token_no_default_policy", "token_num_uses",
                    "token_period", "period", "token_type", "token_bound_cidrs", "bound_cidrs",
                    "token_strictly_bind_ip")

    def _apply_token_fields(self, role, d):
        if "token_policies" in d:
            role["token_policies"] = to_strlist(d["token_policies"], "token_policies", lower=True)
        elif "policies" in d:
            role["token_policies"] = to_strlist(d["policies"], "policies", lower=True)
        for f, alias in (("token_ttl", "ttl"), ("token_max_ttl", "max_ttl"), ("token_period", "period")):
            if f in d:
                role[f] = parse_duration(d[f], f)
            elif alias in d:
                role[f] = parse_duration(d[alias], alias)
        if "token_explicit_max_ttl" in d:
            role["token_explicit_max_ttl"] = parse_duration(d["token_explicit_max_ttl"], "token_explicit_max_ttl")
        if "token_no_default_policy" in d:
            role["token_no_default_policy"] = to_bool(d["token_no_default_policy"], "token_no_default_policy")
        if "token_num_uses" in d:
            role["token_num_uses"] = to_int(d["token_num_uses"], "token_num_uses")
        if "token_bound_cidrs" in d:
            role["token_bound_cidrs"] = to_strlist(d["token_bound_cidrs"], "token_bound_cidrs")
        if "token_type" in d and d["token_type"]:
            role["token_type"] = str(d["token_type"])
        if role.get("token_max_ttl") and role.get("token_ttl", 0) > role["token_max_ttl"]:
            raise bad('"token_ttl" value must be less than "token_max_ttl" value')

    @staticmethod
    def _token_fields_out(role):
        pol = list(role.get("token_policies", []))
        return {
            "token_bound_cidrs": list(role.get("token_bound_cidrs", [])),
            "token_explicit_max_ttl": role.get("token_explicit_max_ttl", 0),
            "token_max_ttl": role.get("token_max_ttl", 0),
            "token_no_default_policy": role.get("token_no_default_policy", False),
            "token_num_uses": role.get("token_num_uses", 0),
            "token_period": role.get("token_period", 0),
            "token_policies": pol,
            "token_ttl": role.get("token_ttl", 0),
            "token_type": role.get("token_type", "default"),
            "policies": pol,
            "period": role.get("token_period", 0),
        }

    @staticmethod
    def _list_roles(am, op):
        if op != "list":
            unsupported_op()
        if not am.roles:
            not_found()
        return ok({"keys": sorted(am.roles)}, mount_type=am.type)
