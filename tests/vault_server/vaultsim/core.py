"""Vault's state and request pipeline: namespaces, the token store, ACL
checks, and routing to the secret engines and auth methods (mixins).

Thread safety: one re-entrant lock (Vault.lock) guards all state; handle()
takes it for the whole request, so handlers run one at a time.
"""

import secrets
import threading

from .api import method_op
from .auth_approle import AppRoleMixin
from .auth_cert import CertMixin
from .auth_token import TokenMixin
from .base import ERR_DENIED, ERR_INVALID_TOKEN, VaultError, bad
from .convert import new_uuid, rand_str
from .kv import KVMixin
from .model import Namespace, Token
from .policy import ACL, Policy
from .sysapi import SysMixin


class Vault(KVMixin, SysMixin, TokenMixin, CertMixin, AppRoleMixin):
    """All Vault state plus request handling.  One lock guards everything."""

    def __init__(self, root_token="root", extra_mounts=(), namespaces=()):
        self.lock = threading.RLock()
        self.extra_mounts = list(extra_mounts)
        self.root_ns = Namespace("", None, self.extra_mounts)
        self.tokens = {}
        self.by_accessor = {}
        self.root_token = Token(root_token, self.root_ns, ["root"], ttl=0, renewable=False,
                                display_name="root", path="auth/token/root", orphan=True)
        self._add_token(self.root_token)
        for ns in namespaces:
            self.create_namespace_path(ns)
        self.sealed = False
        self.standby = None          # (redirect_to, status)
        self.cluster_id = new_uuid()
        self.cluster_name = "vault-cluster-" + secrets.token_hex(4)

    # ---------------- namespaces ----------------

    def create_namespace_path(self, path, base=None):
        ns = base or self.root_ns
        created = None
        for seg in [s for s in path.strip("/").split("/") if s]:
            if seg not in ns.children:
                ns.children[seg] = Namespace(seg, ns, self.extra_mounts)
                created = ns.children[seg]
            ns = ns.children[seg]
        return ns, created

    def resolve_ns(self, header, path):
        segs = [s for s in header.strip().strip("/").split("/") if s]
        segs += path.split("/")
        ns = self.root_ns
        i = 0
        while i < len(segs) - 1 and segs[i] in ns.children:
            ns = ns.children[segs[i]]
            i += 1
        # a namespace name that is the very last segment is still a namespace
        if i == len(segs) - 1 and segs[i] in ns.children and segs[i]:
            ns = ns.children[segs[i]]
            i += 1
        return ns, "/".join(segs[i:])

    # ---------------- tokens ----------------

    def _add_token(self, t):
        self.tokens[t.id] = t
        self.by_accessor[t.accessor] = t
        return t

    def new_token_id(self, ns):
        tid = "hvs." + rand_str(24)
        if ns.path:
            tid += "." + ns.id
        return tid

    def revoke_token(self, t):
        if self.tokens.get(t.id) is not t:
            return
        del self.tokens[t.id]
        self.by_accessor.pop(t.accessor, None)
        for child in [c for c in self.tokens.values() if c.parent == t.id]:
            self.revoke_token(child)

    def token_from_request(self, req):
        tok = req.header("X-Vault-Token").strip()
        if not tok:
            auth = req.header("Authorization").strip()
            if auth[:7].lower() == "bearer ":
                tok = auth[7:].strip()
        return tok

    def authenticate(self, req):
        tid = self.token_from_request(req)
        if not tid:
            raise VaultError(403, [ERR_DENIED])
        t = self.tokens.get(tid)
        if t is None or t.expired():
            raise VaultError(403, [ERR_INVALID_TOKEN])
        if t.ns not in list(req.ns.ancestors_or_self()):
            raise VaultError(403, [ERR_INVALID_TOKEN])
        return t

    def acl_for(self, t):
        pols = []
        for name in t.policies:
            if name == "root":
                pols.append(Policy.__new__(Policy))
                pols[-1].name, pols[-1].rules = "root", {}
            elif name in t.ns.policies:
                pols.append(t.ns.policies[name])
        return ACL(pols)

    @staticmethod
    def acl_path(t, ns, rel, op):
        p = ns.path[len(t.ns.path):] + rel
        if op == "list" and not p.endswith("/"):
            p += "/"
        return p

    # ---------------- main entry ----------------

    def handle(self, req):
        if req.method == "PATCH":
            ctype = req.header("Content-Type").split(";")[0].strip().lower()
            if not ctype:
                raise bad("mime: no media type")
            if ctype != "application/merge-patch+json":
                raise VaultError(415, ["PATCH requires Content-Type of application/merge-patch+json, provided %s" % ctype])
        with self.lock:
            req.ns, req.rel = self.resolve_ns(req.header("X-Vault-Namespace"), req.path)
            op = method_op(req)
            if op is None:
                raise VaultError(405, [])
            req.op = op
            route = self.route(req)
            if route is not None and route.unauth:
                return route.handler()
            t = self.authenticate(req)
            req.token = t
            acl_op = route.op if route else op
            ap = self.acl_path(t, req.ns, req.rel, acl_op)
            if not self.acl_for(t).allows(ap, acl_op, route.sudo if route else False):
                raise VaultError(403, [ERR_DENIED])
            last_use = False
            if t.num_uses > 0:
                t.num_uses -= 1
                last_use = t.num_uses == 0
            try:
                if route is None:
                    raise VaultError(404, ['no handler for route "%s". route entry not found.' % req.rel])
                return route.handler()
            finally:
                if last_use:
                    self.revoke_token(t)

    def route(self, req):
        ns, rel, op = req.ns, req.rel, req.op
        if rel == "sys" or rel.startswith("sys/"):
            return self.route_sys(req, rel[4:], op)
        if rel.startswith("auth/"):
            rest = rel[5:]
            for mp in sorted(ns.auth, key=len, reverse=True):
                if rest.startswith(mp) or rest == mp[:-1]:
                    am = ns.auth[mp]
                    sub = rest[len(mp):]
                    if am.type == "token":
                        return self.route_token(req, sub, op)
                    if am.type == "cert":
                        return self.route_cert(req, am, sub, op)
                    if am.type == "approle":
                        return self.route_approle(req, am, sub, op)
            return None
        for mp in sorted(ns.mounts, key=len, reverse=True):
            if rel.startswith(mp) or rel == mp[:-1]:
                m = ns.mounts[mp]
                sub = rel[len(mp):]
                if m.type == "kv" and m.version == 2:
                    return self.route_kv2(req, m, sub, op)
                if m.type == "kv":
                    return self.route_kv1(req, m, sub, op)
        return None
