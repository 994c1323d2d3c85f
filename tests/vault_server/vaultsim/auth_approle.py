"""The AppRole auth method: roles, role-id, secret-id (generated and custom),
secret-id lookup/destroy, and login.

Thread safety: called with Vault.lock held (core.Vault.handle).
"""

import json

from testserver.core import Response

from . import clock
from .api import Route, no_content, ok
from .base import bad, not_found, unsupported_op, unsupported_path
from .convert import new_uuid, parse_duration, rfc3339, to_bool, to_int, to_strlist, unknown_param_warning


class AppRoleMixin:
    """auth/:mount/ of type approle (mixed into core.Vault)."""

    APPROLE_FIELDS = ("bind_secret_id", "secret_id_bound_cidrs", "secret_id_num_uses", "secret_id_ttl",
                      "local_secret_ids", "role_id", "bound_cidr_list", "role_name")

    def route_approle(self, req, am, sub, op):
        R = Route
        sub = sub.rstrip("/")
        if sub == "login":
            return R(lambda: self.approle_login(req, am) if op == "update" else unsupported_op(), op, unauth=True)
        if sub == "role":
            return R(lambda: self._list_roles(am, op), op)
        if not sub.startswith("role/"):
            return R(unsupported_path, op)
        parts = sub[len("role/"):].split("/")
        name = parts[0]
        rest = "/".join(parts[1:])
        if rest == "":
            return R(lambda: self.approle_role(am, name, req, op), op if op != "update" or name in am.roles else "create")
        if rest == "role-id":
            return R(lambda: self.approle_role_id(am, name, req, op), op)
        if rest in ("secret-id", "custom-secret-id"):
            return R(lambda: self.approle_secret_id(am, name, req, op, custom=rest == "custom-secret-id"), op)
        if rest in ("secret-id/lookup", "secret-id/destroy", "secret-id-accessor/lookup", "secret-id-accessor/destroy"):
            return R(lambda: self.approle_secret_id_op(am, name, rest, req, op), op)
        return R(unsupported_path, op)

    def approle_role(self, am, name, req, op):
        if op == "read":
            role = am.roles.get(name)
            if role is None:
                not_found()
            data = {
                "bind_secret_id": role["bind_secret_id"],
                "local_secret_ids": False,
                "secret_id_bound_cidrs": role.get("secret_id_bound_cidrs") or None,
                "secret_id_num_uses": role["secret_id_num_uses"],
                "secret_id_ttl": role["secret_id_ttl"],
            }
            data.update(self._token_fields_out(role))
            return ok(data, mount_type="approle")
        if op == "update":
            d = req.data
            warn = unknown_param_warning(d, self.APPROLE_FIELDS + self.TOKEN_FIELDS)
            role = dict(am.roles.get(name) or {"bind_secret_id": True, "secret_id_num_uses": 0,
                                               "secret_id_ttl": 0, "role_id": new_uuid()})
            if "bind_secret_id" in d:
                role["bind_secret_id"] = to_bool(d["bind_secret_id"], "bind_secret_id")
            if "secret_id_num_uses" in d:
                role["secret_id_num_uses"] = to_int(d["secret_id_num_uses"], "secret_id_num_uses")
                if role["secret_id_num_uses"] < 0:
                    raise bad("secret_id_num_uses cannot be negative")
            if "secret_id_ttl" in d:
                role["secret_id_ttl"] = parse_duration(d["secret_id_ttl"], "secret_id_ttl")
            for f in ("secret_id_bound_cidrs", "bound_cidr_list"):
                if f in d:
                    role["secret_id_bound_cidrs"] = to_strlist(d[f], f)
            if name not in am.roles and d.get("role_id"):
                role["role_id"] = str(d["role_id"])
            self._apply_token_fields(role, d)
            if (not role["bind_secret_id"] and not role.get("secret_id_bound_cidrs")
                    and not role.get("token_bound_cidrs")):
                raise bad("at least one constraint should be enabled on the role")
            am.roles[name] = role
            return no_content([warn] if warn else None, mount_type="approle")
        if op == "delete":
            am.roles.pop(name, None)
            for sid in [s for s, e in am.secret_ids.items() if e["role"] == name]:
                del am.secret_ids[sid]
            return Response(204)
        unsupported_op()

    def approle_role_id(self, am, name, req, op):
        role = am.roles.get(name)
        if op == "read":
            if role is None:
                not_found()
            return ok({"role_id": role["role_id"]}, mount_type="approle")
        if op == "update":
            if role is None:
                raise bad('role "%s" does not exist' % name)
            rid = str(req.data.get("role_id", "") or "")
            if not rid:
                raise bad("missing role_id")
            role["role_id"] = rid
            return Response(204)
        unsupported_op()

    def approle_secret_id(self, am, name, req, op, custom=False):
        role = am.roles.get(name)
        if op == "list" and not custom:
            if role is None:
                not_found()
            keys = sorted(e["accessor"] for e in am.secret_ids.values() if e["role"] == name)
            if not keys:
                not_found()
            return ok({"keys": keys}, mount_type="approle")
        if op != "update":
            unsupported_op()
        if role is None:
            raise bad('role "%s" does not exist' % name)
        d = req.data
        ttl = parse_duration(d.get("ttl"), "ttl") or role["secret_id_ttl"]
        if role["secret_id_ttl"] and ttl > role["secret_id_ttl"]:
            ttl = role["secret_id_ttl"]
        num_uses = to_int(d.get("num_uses", 0), "num_uses") or role["secret_id_num_uses"]
        meta = d.get("metadata")
        if isinstance(meta, str) and meta:
            try:
                meta = json.loads(meta)
            except ValueError:
                raise bad("failed to parse metadata: invalid JSON")
        sid = str(d.get("secret_id")) if custom and d.get("secret_id") else new_uuid()
        if custom and not d.get("secret_id"):
            raise bad("missing secret_id")
        now = clock.now()
        entry = {"role": name, "accessor": new_uuid(), "created": now, "ttl": ttl,
                 "expires": now + ttl if ttl else None, "num_uses": num_uses,
                 "metadata": meta if isinstance(meta, dict) else {}}
        am.secret_ids[sid] = entry
        return ok({"secret_id": sid, "secret_id_accessor": entry["accessor"], "secret_id_ttl": ttl,
                   "secret_id_num_uses": num_uses}, mount_type="approle")

    def approle_secret_id_op(self, am, name, rest, req, op):
        if op != "update":
            unsupported_op()
        d = req.data
        if rest.startswith("secret-id-accessor"):
            acc = str(d.get("secret_id_accessor", "") or "")
            found = [(s, e) for s, e in am.secret_ids.items() if e["accessor"] == acc and e["role"] == name]
        else:
            sid = str(d.get("secret_id", "") or "")
            e = am.secret_ids.get(sid)
            found = [(sid, e)] if e is not None and e["role"] == name else []
        if rest.endswith("destroy"):
            for s, _e in found:
                del am.secret_ids[s]
            return Response(204)
        if not found:
            return Response(204)
        _s, e = found[0]
        return ok({"cidr_list": [], "creation_time": rfc3339(e["created"]),
                   "expiration_time": rfc3339(e["expires"]) if e["expires"] else "0001-01-01T00:00:00Z",
                   "last_updated_time": rfc3339(e["created"]), "metadata": e["metadata"],
                   "secret_id_accessor": e["accessor"], "secret_id_num_uses": e["num_uses"],
                   "secret_id_ttl": e["ttl"], "token_bound_cidrs": []}, mount_type="approle")

    def approle_login(self, req, am):
        d = req.data
        role_id = str(d.get("role_id", "") or "").strip()
        if not role_id:
            raise bad("missing role_id")
        found = [(n, r) for n, r in am.roles.items() if r["role_id"] == role_id]
        if not found:
            raise bad("invalid role or secret ID")
        name, role = found[0]
        if role["bind_secret_id"]:
            sid = str(d.get("secret_id", "") or "").strip()
            if not sid:
                raise bad("missing secret_id")
            e = am.secret_ids.get(sid)
            if e is None or e["role"] != name or (e["expires"] and e["expires"] <= clock.now()):
                raise bad("invalid role or secret ID")
            if e["num_uses"] > 0:
                e["num_uses"] -= 1
                if e["num_uses"] == 0:
                    del am.secret_ids[sid]
        return self.issue_login_token(req.ns, am, role, "approle", {"role_name": name})
