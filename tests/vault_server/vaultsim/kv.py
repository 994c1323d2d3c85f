"""KV secrets engines: version 2 (data/, metadata/, delete/, undelete/,
destroy/, subkeys/, config and Vault's catch-all for other paths) and a
minimal version 1.

Thread safety: called with Vault.lock held (core.Vault.handle).
"""

import json

from testserver.core import Response

from . import clock
from .api import Route, envelope, no_content, ok
from .base import (DEFAULT_MAX_VERSIONS, ERR_CAS_MISMATCH, ERR_CAS_REQUIRED, SYS_DEFAULT_TTL, bad,
                   not_found, unsupported_op)
from .convert import (conv_error, go_duration, go_quote, json_merge_patch, parse_duration, rfc3339, to_bool,
                      to_int, to_map, to_strmap, unknown_param_warning)
from .model import KVSecret

# The K/V v2 backend's catch-all path (pathInvalid in vault-plugin-secrets-kv):
# clients such as the Vault CLI and hvac users tell a v1 from a v2 mount by it.
KV2_ROOT_WARNING = "Non-listing operations on the root of a K/V v2 mount are not supported."
KV2_INVALID_WARNING = ("Invalid path for a versioned K/V secrets engine. See the API docs for the "
                       "appropriate API endpoints to use. If using the Vault CLI, use 'vault kv %s' "
                       "for this operation.")
_KV_SUBCOMMAND = {"update": "put", "create": "put", "patch": "patch", "read": "get",
                  "list": "list", "delete": "delete"}


def kv2_invalid_path(sub, op):
    """404 with the full envelope and Vault's warning.  The backend renders this
    body itself (logical.RespondWithStatusCode), so mount_type stays empty."""
    if sub in ("metadata", "data", "delete", "undelete", "destroy"):
        warning = KV2_ROOT_WARNING
    else:
        warning = KV2_INVALID_WARNING % _KV_SUBCOMMAND.get(op, "")
    return Response(404, envelope(None, [warning], mount_type=""))


class KVMixin:
    """Routes and handlers of KV mounts (mixed into core.Vault)."""

    def route_kv2(self, req, m, sub, op):
        seg, _, key = sub.partition("/")
        R = Route
        if op != "list" and "/" not in sub and sub != "config":
            # "data" without its slash, a v1-style "foo", the mount root: Vault's
            # paths are "data/.*" etc., so these reach the catch-all.  (A LIST
            # path gets its trailing slash first, so "metadata" lists.)
            return R(lambda: kv2_invalid_path(sub, op), op)
        if sub == "config":
            if op == "read":
                return R(lambda: self.kv2_config_read(m), op)
            if op == "update":
                return R(lambda: self.kv2_config_write(m, req), op)
            return R(unsupported_op, op)
        if seg == "data":
            if op == "read":
                return R(lambda: self.kv2_read(m, key, req), op)
            if op == "update":
                return R(lambda: self.kv2_write(m, key, req), "update" if key in m.secrets else "create")
            if op == "patch":
                return R(lambda: self.kv2_patch(m, key, req), op)
            if op == "delete":
                return R(lambda: self.kv2_delete_latest(m, key), op)
            return R(unsupported_op, op)
        if seg == "metadata":
            if op == "read":
                return R(lambda: self.kv2_meta_read(m, key), op)
            if op == "list":
                return R(lambda: self.kv2_list(m, key), op)
            if op == "update":
                return R(lambda: self.kv2_meta_write(m, key, req), "update" if key in m.secrets else "create")
            if op == "patch":
                return R(lambda: self.kv2_meta_patch(m, key, req), op)
            if op == "delete":
                return R(lambda: self.kv2_meta_delete(m, key), op)
            return R(unsupported_op, op)
        if seg in ("delete", "undelete", "destroy"):
            if op == "update":
                return R(lambda: self.kv2_versions_op(m, seg, key, req), op)
            return R(unsupported_op, op)
        if seg == "subkeys":
            if op == "read":
                return R(lambda: self.kv2_subkeys(m, key, req), op)
            return R(unsupported_op, op)
        return R(lambda: kv2_invalid_path(sub, op), op)

    @staticmethod
    def _deleted(v, now=None):
        return v["deletion"] is not None and v["deletion"] <= (now or clock.now())

    @staticmethod
    def _vmeta(s, n):
        v = s.versions[n]
        return {
            "created_time": rfc3339(v["created"]),
            "custom_metadata": dict(s.custom_metadata) if s.custom_metadata else None,
            "deletion_time": rfc3339(v["deletion"]) if v["deletion"] is not None else "",
            "destroyed": v["destroyed"],
            "version": n,
        }

    @staticmethod
    def _max_versions(m, s):
        """The larger of the secret's and the mount's max_versions, else 10 (as Vault)."""
        mine = s.max_versions if s is not None else 0
        return max(mine, m.config["max_versions"]) or DEFAULT_MAX_VERSIONS

    @staticmethod
    def _dva(m, s):
        cfg = m.config["delete_version_after"]
        mine = s.dva if s is not None else 0
        if mine < 0:
            return 0
        if mine > 0:
            return min(mine, cfg) if cfg > 0 else mine
        return cfg if cfg > 0 else 0

    def _version_param(self, req):
        raw = req.data.get("version", 0)
        v = to_int(raw, "version")
        if v < 0:
            raise bad("version must be greater than or equal to 0")
        return v

    def _requested_version(self, m, key, ver):
        """(version dict, or None when deleted/destroyed; its metadata) for version ver (0: current)."""
        s = m.secrets.get(key)
        if s is None or s.current == 0:
            not_found()
        n = ver or s.current
        if n not in s.versions:
            not_found()
        v = s.versions[n]
        live = not (v["destroyed"] or self._deleted(v))
        return (v if live else None), self._vmeta(s, n)

    def kv2_read(self, m, key, req):
        v, md = self._requested_version(m, key, self._version_param(req))
        if v is None:
            return Response(404, envelope({"data": None, "metadata": md}, mount_type="kv"))
        return ok({"data": json.loads(json.dumps(v["data"])), "metadata": md}, mount_type="kv")

    def _check_cas(self, m, s, opts):
        cas_required = m.config["cas_required"] or (s is not None and s.cas_required)
        if "cas" in opts and opts["cas"] is not None:
            cas = to_int(opts["cas"], "cas")
            cur = s.current if s is not None else 0
            if cas != cur:
                raise bad(ERR_CAS_MISMATCH)
        elif cas_required:
            raise bad(ERR_CAS_REQUIRED)

    def _add_version(self, m, key, s, data):
        now = clock.now()
        if s is None:
            s = KVSecret(now)
            m.secrets[key] = s
        n = s.current + 1
        dva = self._dva(m, s)
        s.versions[n] = {"data": data, "created": now,
                         "deletion": now + dva if dva else None, "destroyed": False}
        s.current = n
        s.updated = now
        # KeyMetadata.AddVersion: the window [oldest, current] slides on every
        # write once it spans max_versions, so oldest_version is 1 after the
        # second write with max_versions=2 (not only once a version is pruned).
        maxv = self._max_versions(m, s)
        if s.current - s.oldest >= maxv:
            drop = s.current - maxv
            for old in [v for v in s.versions if v <= drop]:
                del s.versions[old]
            s.oldest = drop + 1
        return ok(self._vmeta(s, n), mount_type="kv")

    def kv2_write(self, m, key, req):
        d = req.data
        if key == "":
            raise bad("missing path")
        warn = unknown_param_warning(d, ("data", "options", "version"))
        if d.get("data") is None:
            raise bad("no data provided")
        data = to_map(d["data"], "data")
        opts = to_map(d.get("options"), "options") or {}
        s = m.secrets.get(key)
        self._check_cas(m, s, opts)
        resp = self._add_version(m, key, s, json.loads(json.dumps(data)))
        if warn:
            resp.body["warnings"] = [warn]
        return resp

    def kv2_patch(self, m, key, req):
        d = req.data
        if d.get("data") is None:
            raise bad("no data provided")
        patch = to_map(d["data"], "data")
        opts = to_map(d.get("options"), "options") or {}
        s = m.secrets.get(key)
        if s is None or s.current == 0 or s.current not in s.versions:
            not_found()
        cur = s.versions[s.current]
        if cur["destroyed"] or self._deleted(cur):
            not_found()
        self._check_cas(m, s, opts)
        return self._add_version(m, key, s, json_merge_patch(cur["data"], patch))

    def kv2_delete_latest(self, m, key):
        s = m.secrets.get(key)
        if s is not None and s.current in s.versions:
            v = s.versions[s.current]
            if not v["destroyed"] and not self._deleted(v):
                v["deletion"] = clock.now()
        return Response(204)

    def kv2_versions_op(self, m, opname, key, req):
        d = req.data
        raw = d.get("versions")
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = [raw]
        elif isinstance(raw, str):
            raw = [x for x in raw.split(",") if x.strip()]
        if raw is not None and not isinstance(raw, list):
            raise conv_error(raw, "versions", "[]int")
        versions = [to_int(x, "versions") for x in (raw or [])]
        if not versions:
            raise bad("no version number provided")
        s = m.secrets.get(key)
        if s is None:
            return Response(204)
        now = clock.now()
        for n in versions:
            v = s.versions.get(n)
            if v is None:
                continue
            if opname == "delete":
                if not v["destroyed"] and not self._deleted(v, now):
                    v["deletion"] = now
            elif opname == "undelete":
                if not v["destroyed"]:
                    v["deletion"] = None
            else:
                v["destroyed"] = True
                v["data"] = None
        s.updated = now
        return Response(204)

    def kv2_meta_read(self, m, key):
        s = m.secrets.get(key)
        if s is None:
            not_found()
        versions = {}
        for n in sorted(s.versions):
            v = s.versions[n]
            versions[str(n)] = {
                "created_time": rfc3339(v["created"]),
                "deletion_time": rfc3339(v["deletion"]) if v["deletion"] is not None else "",
                "destroyed": v["destroyed"],
            }
        return ok({
            "cas_required": s.cas_required,
            "created_time": rfc3339(s.created),
            "current_version": s.current,
            "custom_metadata": dict(s.custom_metadata) if s.custom_metadata else None,
            "delete_version_after": go_duration(s.dva),
            "max_versions": s.max_versions,
            "oldest_version": s.oldest,
            "updated_time": rfc3339(s.updated),
            "versions": versions,
        }, mount_type="kv")

    @staticmethod
    def _check_custom_metadata(cm):
        errs = []
        if len(cm) > 64:
            errs.append("payload must contain at most 64 keys, provided: %d" % len(cm))
        for k, v in cm.items():
            if len(k) > 128:
                errs.append("length of key %s is %d but max is 128" % (go_quote(k), len(k)))
            if len(v) > 512:
                errs.append("length of value for key %s is %d but max is 512" % (go_quote(k), len(v)))
        if errs:
            raise bad("custom_metadata validation failed: %d error%s occurred:\n%s\n\n" % (
                len(errs), "" if len(errs) == 1 else "s", "\n".join("\t* " + e for e in errs)))

    def _apply_meta(self, s, d, patch=False):
        if "max_versions" in d:
            mv = to_int(d["max_versions"], "max_versions")
            if mv < 0:
                raise bad("max_versions must be greater than or equal to 0")
            s.max_versions = mv
        if "cas_required" in d:
            s.cas_required = to_bool(d["cas_required"], "cas_required")
        if "delete_version_after" in d:
            s.dva = parse_duration(d["delete_version_after"], "delete_version_after")
        if "custom_metadata" in d:
            if patch:
                cm = to_map(d["custom_metadata"], "custom_metadata") or {}
                merged = json_merge_patch(s.custom_metadata or {}, cm)
                cm = to_strmap(merged, "custom_metadata")
            else:
                cm = to_strmap(d["custom_metadata"], "custom_metadata") or {}
            self._check_custom_metadata(cm)
            s.custom_metadata = cm or None

    META_FIELDS = ("max_versions", "cas_required", "delete_version_after", "custom_metadata")

    def kv2_meta_write(self, m, key, req):
        d = req.data
        if key == "":
            raise bad("missing path")
        warn = unknown_param_warning(d, self.META_FIELDS)
        s = m.secrets.get(key)
        fresh = s is None
        if fresh:
            s = KVSecret(clock.now())
        self._apply_meta(s, d)
        s.updated = clock.now()
        if fresh:
            m.secrets[key] = s
        return no_content([warn] if warn else None, mount_type="kv")

    def kv2_meta_patch(self, m, key, req):
        d = req.data
        s = m.secrets.get(key)
        if s is None:
            not_found()
        warn = unknown_param_warning(d, self.META_FIELDS)
        self._apply_meta(s, d, patch=True)
        s.updated = clock.now()
        return no_content([warn] if warn else None, mount_type="kv")

    def kv2_meta_delete(self, m, key):
        m.secrets.pop(key, None)
        return Response(204)

    @staticmethod
    def _list_keys(store, prefix):
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        keys = set()
        for k in store:
            if not k.startswith(prefix) or k == prefix:
                continue
            rest = k[len(prefix):]
            i = rest.find("/")
            keys.add(rest if i < 0 else rest[:i + 1])
        return sorted(keys)

    def kv2_list(self, m, key):
        keys = self._list_keys(m.secrets, key)
        if not keys:
            not_found()
        return ok({"keys": keys}, mount_type="kv")

    def kv2_config_read(self, m):
        return ok({"cas_required": m.config["cas_required"],
                   "delete_version_after": go_duration(m.config["delete_version_after"]),
                   "max_versions": m.config["max_versions"]}, mount_type="kv")

    def kv2_config_write(self, m, req):
        d = req.data
        warn = unknown_param_warning(d, ("max_versions", "cas_required", "delete_version_after"))
        if "max_versions" in d:
            m.config["max_versions"] = to_int(d["max_versions"], "max_versions")
        if "cas_required" in d:
            m.config["cas_required"] = to_bool(d["cas_required"], "cas_required")
        if "delete_version_after" in d:
            m.config["delete_version_after"] = parse_duration(d["delete_version_after"], "delete_version_after")
        return no_content([warn] if warn else None, mount_type="kv")

    def kv2_subkeys(self, m, key, req):
        ver = self._version_param(req)
        depth = to_int(req.data.get("depth", 0), "depth")
        v, md = self._requested_version(m, key, ver)
        if v is None:
            return Response(404, envelope({"subkeys": None, "metadata": md}, mount_type="kv"))

        def walk(obj, level):
            out = {}
            for k, val in obj.items():
                if isinstance(val, dict) and (depth == 0 or level < depth):
                    out[k] = walk(val, level + 1)
                else:
                    out[k] = None
            return out
        return ok({"subkeys": walk(v["data"], 1), "metadata": md}, mount_type="kv")

    # ---------------- KV v1 (minimal) ----------------

    def route_kv1(self, req, m, key, op):
        def read():
            if key not in m.secrets:
                not_found()
            body = envelope(json.loads(json.dumps(m.secrets[key])), mount_type="kv")
            body["lease_duration"] = SYS_DEFAULT_TTL
            return Response(200, body)

        def write():
            if not key:
                raise bad("missing path")
            m.secrets[key] = json.loads(json.dumps(req.data))
            return Response(204)

        def delete():
            m.secrets.pop(key, None)
            return Response(204)

        def lst():
            keys = self._list_keys(m.secrets, key)
            if not keys:
                not_found()
            return ok({"keys": keys}, mount_type="kv")
        handlers = {"read": read, "update": write, "delete": delete, "list": lst}
        if op == "update":
            return Route(write, "update" if key in m.secrets else "create")
        return Route(handlers.get(op, unsupported_op), op)
