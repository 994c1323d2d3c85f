"""sys/ endpoints: health, seal-status, init, leader, mounts (+ tune), auth
methods (+ tune), policies, namespaces, capabilities, internal/ui/mounts.

Thread safety: called with Vault.lock held (core.Vault.handle).
"""

import re

from testserver.core import Response

from . import clock
from .api import Route, ok
from .base import (ERR_DENIED, SYS_DEFAULT_TTL, SYS_MAX_TTL, VAULT_VERSION, VaultError, bad,
                   not_found, unsupported_op, unsupported_path)
from .convert import go_quote, json_merge_patch, parse_duration, to_map, to_strlist, to_strmap
from .model import AuthMount, Mount, Namespace
from .policy import Policy, PolicyParseError


def _backend_type(d):
    mtype = d.get("type", "")
    if not isinstance(mtype, str) or not mtype:
        raise bad("backend type must be specified as a string")
    return mtype


def _check_path_free(table, mp):
    for existing in table:
        if mp.startswith(existing) or existing.startswith(mp):
            raise bad("path is already in use at %s" % existing)


def _enable(table, mp, entry, d):
    """Adds a new secret or auth mount with its lease config (POST sys/mounts|auth/:path)."""
    cfg = to_map(d.get("config"), "config") or {}
    entry.default_lease_ttl = parse_duration(cfg.get("default_lease_ttl", 0), "default_lease_ttl")
    entry.max_lease_ttl = parse_duration(cfg.get("max_lease_ttl", 0), "max_lease_ttl")
    table[mp] = entry
    return Response(204)


class SysMixin:
    """Routes and handlers under sys/ (mixed into core.Vault)."""

    def route_sys(self, req, sub, op):
        R = Route
        ns = req.ns
        if sub == "health":
            return R(lambda: self.sys_health(req), op, unauth=True)
        if sub == "seal-status":
            return R(lambda: Response(200, self.seal_status()), op, unauth=True)
        if sub == "init":
            return R(lambda: Response(200, {"initialized": True}) if op == "read" else unsupported_op(),
                     op, unauth=True)
        if sub == "leader":
            return R(lambda: Response(200, {
                "ha_enabled": False, "is_self": False, "active_time": "0001-01-01T00:00:00Z",
                "leader_address": "", "leader_cluster_address": "", "performance_standby": False,
                "performance_standby_last_remote_wal": 0}), op, unauth=True)
        if sub.startswith("internal/ui/mounts/") or sub == "internal/ui/mounts":
            return R(lambda: self.sys_ui_mount(req, sub[len("internal/ui/mounts/"):]), op, unauth=True)
        if sub in ("mounts", "mounts/"):
            return R(lambda: self.sys_mounts_list(ns) if op == "read" else unsupported_op(), op)
        if sub.startswith("mounts/"):
            p = sub[len("mounts/"):]
            if p.endswith("/tune"):
                mp = p[:-len("/tune")].strip("/") + "/"
                return R(lambda: self.sys_mount_tune(ns, mp, req, op), op)
            mp = p.strip("/") + "/"
            return R(lambda: self.sys_mount(ns, mp, req, op), op)
        if sub in ("auth", "auth/"):
            return R(lambda: self.sys_auth_list(ns) if op == "read" else unsupported_op(), op)
        if sub.startswith("auth/"):
            p = sub[len("auth/"):]
            if p.endswith("/tune"):
                mp = p[:-len("/tune")].strip("/") + "/"
                return R(lambda: self.sys_auth_tune(ns, mp, req, op), op, sudo=True)
            mp = p.strip("/") + "/"
            return R(lambda: self.sys_auth(ns, mp, req, op), op, sudo=op != "read")
        if sub in ("policies/acl", "policies/acl/"):
            return R(lambda: self.sys_policy_list(ns, legacy=False) if op == "list" else unsupported_op(), op)
        if sub.startswith("policies/acl/"):
            name = sub[len("policies/acl/"):]
            return R(lambda: self.sys_policy(ns, name, req, op, legacy=False), op)
        if sub in ("policy", "policy/"):
            return R(lambda: self.sys_policy_list(ns, legacy=True) if op in ("read", "list") else unsupported_op(), op)
        if sub.startswith("policy/"):
            name = sub[len("policy/"):]
            return R(lambda: self.sys_policy(ns, name, req, op, legacy=True), op)
        if sub in ("namespaces", "namespaces/"):
            return R(lambda: self.sys_ns_list(ns) if op == "list" else unsupported_op(), op)
        if sub.startswith("namespaces/"):
            p = sub[len("namespaces/"):].strip("/")
            return R(lambda: self.sys_namespace(ns, p, req, op), op)
        if sub == "capabilities-self":
            return R(lambda: self.sys_capabilities(req, self_=True) if op == "update" else unsupported_op(), op)
        if sub in ("capabilities", "capabilities-accessor"):
            return R(lambda: self.sys_capabilities(req, self_=False, by_accessor=sub.endswith("accessor"))
                     if op == "update" else unsupported_op(), op, sudo=True)
        return R(unsupported_path, op)

    def sys_health(self, req):
        def code(name, default):
            v = req.query.get(name, [""])[0]
            return int(v) if v.isdigit() else default

        def flag(name):
            v = req.query.get(name, [""])[0].lower()
            return v in ("", "1", "t", "true") if name in req.query else False
        standby = self.standby is not None
        body = {
            "initialized": True,
            "sealed": self.sealed,
            "standby": standby or self.sealed,
            "performance_standby": False,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": int(clock.now()),
            "version": VAULT_VERSION,
            "enterprise": False,
            "echo_duration_ms": 0,
            "clock_skew_ms": 0,
        }
        if not self.sealed:
            body["cluster_name"] = self.cluster_name
            body["cluster_id"] = self.cluster_id
        if self.sealed:
            status = code("sealedcode", 503)
        elif standby:
            status = 200 if flag("standbyok") else code("standbycode", 429)
        else:
            status = code("activecode", 200)
        return Response(status, body)

    def seal_status(self):
        body = {"type": "shamir", "initialized": True, "sealed": self.sealed, "t": 1, "n": 1,
                "progress": 0, "nonce": "", "version": VAULT_VERSION,
                "build_date": "2024-02-28T17:07:34Z", "migration": False,
                "recovery_seal": False, "storage_type": "inmem"}
        if not self.sealed:
            body["cluster_name"] = self.cluster_name
            body["cluster_id"] = self.cluster_id
        return body

    def _find_mount(self, ns, path):
        for mp in sorted(ns.mounts, key=len, reverse=True):
            if path.startswith(mp) or path == mp[:-1]:
                return ns.mounts[mp]
        return None

    def sys_ui_mount(self, req, path):
        tid = self.token_from_request(req)
        t = self.tokens.get(tid) if tid else None
        if t is None or t.expired() or t.ns not in list(req.ns.ancestors_or_self()):
            raise VaultError(403, [ERR_DENIED])
        m = self._find_mount(req.ns, path)
        acl = self.acl_for(t)
        if m is not None:
            base = req.ns.path[len(t.ns.path):] + m.path
            allowed = acl.root or any(
                caps and "deny" not in caps for caps in
                [acl.capabilities(base)] + [acl.exact[p] for p in acl.exact if p.startswith(base)] +
                [c for (_pr, rx, c) in acl.wild if rx.match(base) or _pr[4].startswith(base)])
            if allowed:
                data = m.listing()
                data["path"] = m.path
                return ok(data, mount_type="system")
        raise VaultError(403, ["preflight capability check returned 403, please ensure client's policies grant access to path \"%s\"" % (path if path.endswith("/") else path + "/")])

    def sys_mounts_list(self, ns):
        data = {p: m.listing() for p, m in sorted(ns.mounts.items())}
        return ok(data, mount_type="system", extra=data)

    def sys_mount(self, ns, mp, req, op):
        if op == "read":
            m = ns.mounts.get(mp)
            if m is None:
                raise bad("No secret engine mount at %s" % mp)
            return ok(m.listing(), mount_type="system")
        if op == "update":
            d = req.data
            mtype = _backend_type(d)
            opts = to_map(d.get("options"), "options") or {}
            version = 1
            if mtype in ("kv-v2",):
                version = 2
            elif mtype == "kv":
                version = 2 if str(opts.get("version", "1")) == "2" else 1
            else:
                raise bad("plugin not found in the catalog: %s" % mtype)
            if mp in ("sys/", "auth/", "cubbyhole/", "identity/") or mp.startswith("sys/") or mp.startswith("auth/"):
                raise bad("cannot mount '%s' of type '%s' as it is a reserved path" % (mp, mtype))
            _check_path_free(ns.mounts, mp)
            return _enable(ns.mounts, mp, Mount(mp, "kv", version, str(d.get("description", "") or "")), d)
        if op == "delete":
            if mp == "sys/":
                raise bad("cannot unmount \"sys/\"")
            ns.mounts.pop(mp, None)
            return Response(204)
        unsupported_op()

    def sys_mount_tune(self, ns, mp, req, op):
        m = ns.mounts.get(mp)
        if m is None:
            raise bad('cannot fetch sysview for path "%s"' % mp)
        if op == "read":
            data = {"default_lease_ttl": m.default_lease_ttl or SYS_DEFAULT_TTL,
                    "max_lease_ttl": m.max_lease_ttl or SYS_MAX_TTL,
                    "force_no_cache": False, "description": m.description}
            if m.options:
                data["options"] = dict(m.options)
            return ok(data, mount_type="system")
        if op == "update":
            d = req.data
            opts = to_map(d.get("options"), "options") or {}
            if m.type == "kv" and str(opts.get("version", "")) == "2" and m.version == 1:
                m.version = 2
                m.options = {"version": "2"}
                m.secrets = {}
            if "default_lease_ttl" in d:
                m.default_lease_ttl = parse_duration(d["default_lease_ttl"], "default_lease_ttl")
            if "max_lease_ttl" in d:
                m.max_lease_ttl = parse_duration(d["max_lease_ttl"], "max_lease_ttl")
            if "description" in d:
                m.description = str(d["description"])
            return Response(204)
        unsupported_op()

    def sys_auth_list(self, ns):
        data = {p: a.listing() for p, a in sorted(ns.auth.items())}
        return ok(data, mount_type="system", extra=data)

    def sys_auth(self, ns, mp, req, op):
        if op == "read":
            a = ns.auth.get(mp)
            if a is None:
                raise bad("No auth engine at %s" % mp)
            return ok(a.listing(), mount_type="system")
        if op == "update":
            d = req.data
            mtype = _backend_type(d)
            if mtype not in ("cert", "approle"):
                if mtype == "token":
                    raise bad("token credential backend cannot be instantiated")
                raise bad("plugin not found in the catalog: %s" % mtype)
            _check_path_free(ns.auth, mp)
            return _enable(ns.auth, mp, AuthMount(mp, mtype, str(d.get("description", "") or "")), d)
        if op == "delete":
            if mp == "token/":
                raise bad("token credential backend cannot be disabled")
            a = ns.auth.pop(mp, None)
            if a is not None:
                for t in [t for t in self.tokens.values() if t.auth_mount == (ns, mp)]:
                    self.revoke_token(t)
            return Response(204)
        unsupported_op()

    def sys_auth_tune(self, ns, mp, req, op):
        a = ns.auth.get(mp)
        if a is None:
            raise bad('cannot fetch sysview for path "auth/%s"' % mp)
        if op == "read":
            return ok({"default_lease_ttl": a.default_lease_ttl or SYS_DEFAULT_TTL,
                       "max_lease_ttl": a.max_lease_ttl or SYS_MAX_TTL,
                       "force_no_cache": False, "description": a.description,
                       "token_type": "default-service"}, mount_type="system")
        if op == "update":
            d = req.data
            if "default_lease_ttl" in d:
                a.default_lease_ttl = parse_duration(d["default_lease_ttl"], "default_lease_ttl")
            if "max_lease_ttl" in d:
                a.max_lease_ttl = parse_duration(d["max_lease_ttl"], "max_lease_ttl")
            return Response(204)
        unsupported_op()

    def sys_policy_list(self, ns, legacy):
        keys = sorted(set(ns.policies) | {"root"})
        if legacy:
            data = {"keys": keys, "policies": keys}
            return ok(data, mount_type="system", extra=data)
        return ok({"keys": keys}, mount_type="system")

    def sys_policy(self, ns, name, req, op, legacy):
        name = name.strip("/").lower()
        if op == "list" and not name:
            return self.sys_policy_list(ns, legacy)
        if not name:
            raise bad("policy name must be provided")
        if op == "read":
            if name == "root" or name not in ns.policies:
                not_found()
            text = ns.policies[name].text
            if legacy:
                data = {"name": name, "rules": text}
                return ok(data, mount_type="system", extra=data)
            return ok({"name": name, "policy": text}, mount_type="system")
        if op == "update":
            d = req.data
            text = d.get("policy")
            if legacy and not text:
                text = d.get("rules")
            if not isinstance(text, str) or not text.strip():
                raise bad("'policy' parameter not supplied or empty")
            if name == "root":
                raise bad("cannot update root policy")
            try:
                ns.policies[name] = Policy(name, text)
            except PolicyParseError as e:
                raise bad("failed to parse policy: %s" % e)
            return Response(204)
        if op == "delete":
            if name in ("root", "default"):
                raise bad("cannot delete %s policy" % name)
            ns.policies.pop(name, None)
            return Response(204)
        unsupported_op()

    def sys_ns_list(self, ns):
        if not ns.children:
            not_found()
        keys = sorted(k + "/" for k in ns.children)
        info = {k + "/": c.ns_info() for k, c in ns.children.items()}
        return ok({"keys": keys, "key_info": info}, mount_type="ns_system")

    RESERVED_NS = ("root", "sys", "audit", "auth", "cubbyhole", "identity")

    def sys_namespace(self, ns, path, req, op):
        segs = [s for s in path.split("/") if s]
        if not segs:
            raise bad("namespace path must not be empty")
        parent = ns
        for s in segs[:-1]:
            parent = parent.children.get(s)
            if parent is None:
                if op == "update":
                    raise bad('parent namespace does not exist')
                not_found()
        name = segs[-1]
        if op == "read":
            c = parent.children.get(name)
            if c is None:
                not_found()
            return ok(c.ns_info(), mount_type="ns_system")
        if op == "list":
            c = parent.children.get(name)
            if c is None:
                not_found()
            return self.sys_ns_list(c)
        if op in ("update", "patch"):
            c = parent.children.get(name)
            d = req.data
            cm = to_strmap(d.get("custom_metadata"), "custom_metadata")
            if c is None:
                if op == "patch":
                    not_found()
                if name in self.RESERVED_NS or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
                    raise bad('"%s" is a reserved path and cannot be used as a namespace name' % name
                              if name in self.RESERVED_NS else "invalid namespace name %s" % go_quote(name))
                c = Namespace(name, parent, self.extra_mounts)
                parent.children[name] = c
            if cm is not None:
                c.custom_metadata = json_merge_patch(c.custom_metadata, cm) if op == "patch" else cm
            return ok(c.ns_info(), mount_type="ns_system")
        if op == "delete":
            c = parent.children.get(name)
            if c is None:
                return Response(204)
            if c.children:
                raise bad('cannot delete namespace ("%s") containing child namespaces' % c.path)
            del parent.children[name]
            for t in [t for t in self.tokens.values() if t.ns is c]:
                self.revoke_token(t)
            return ok({"status": "in-progress"}, mount_type="ns_system")
        unsupported_op()

    def sys_capabilities(self, req, self_, by_accessor=False):
        d = req.data
        t = req.token
        if not self_:
            if by_accessor:
                t = self.by_accessor.get(str(d.get("accessor", "")))
            else:
                t = self.tokens.get(str(d.get("token", "")))
            if t is None:
                raise bad("invalid token")
        paths = to_strlist(d.get("paths", d.get("path")), "paths")
        if not paths:
            raise bad("missing path")
        acl = self.acl_for(t)
        data = {}
        for p in paths:
            caps = acl.capabilities(req.ns.path[len(t.ns.path):] + p.lstrip("/"))
            caps.discard("subscribe")
            lst = ["root"] if "root" in caps else (["deny"] if not caps or "deny" in caps else sorted(caps))
            data[p] = lst
        if len(paths) == 1:
            data["capabilities"] = data[paths[0]]
        return ok(data, mount_type="system", extra=data)
