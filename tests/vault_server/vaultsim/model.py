"""Vault's state objects: tokens, KV secrets, secret and auth mounts, namespaces.

Thread safety: none here; Vault.lock (core.py) guards every object.
"""

import secrets

from . import clock
from .base import VAULT_VERSION
from .convert import new_uuid, rand_str, rfc3339
from .policy import DEFAULT_POLICY, Policy


class Token:
    def __init__(self, tid, ns, policies, ttl=0, explicit_max_ttl=0, max_ttl=0,
                 renewable=True, num_uses=0, display_name="token", meta=None,
                 path="auth/token/create", orphan=False, period=0, auth_mount=None,
                 parent=None):
        self.id = tid
        self.accessor = rand_str(24)
        self.ns = ns
        self.policies = policies
        self.created = clock.now()
        self.ttl = ttl                      # creation TTL (0 = never expires)
        self.expire_at = self.created + ttl if ttl else None
        self.explicit_max_ttl = explicit_max_ttl
        self.max_ttl = max_ttl              # role/mount max, 0 = system max
        self.renewable = renewable
        self.num_uses = num_uses
        self.display_name = display_name
        self.meta = meta
        self.path = path
        self.orphan = orphan
        self.period = period
        self.auth_mount = auth_mount        # (ns, "cert/") for login tokens
        self.parent = parent
        self.last_renewal = None
        self.entity_id = ""

    def expired(self, now=None):
        return self.expire_at is not None and (now or clock.now()) >= self.expire_at

    def remaining(self):
        if self.expire_at is None:
            return 0
        return max(0, int(round(self.expire_at - clock.now())))

    def lookup_data(self):
        d = {
            "accessor": self.accessor,
            "creation_time": int(self.created),
            "creation_ttl": self.ttl,
            "display_name": self.display_name,
            "entity_id": self.entity_id,
            "expire_time": rfc3339(self.expire_at) if self.expire_at else None,
            "explicit_max_ttl": self.explicit_max_ttl,
            "id": self.id,
            "issue_time": rfc3339(self.created),
            "meta": self.meta,
            "num_uses": self.num_uses,
            "orphan": self.orphan,
            "path": self.path,
            "policies": list(self.policies),
            "renewable": self.renewable,
            "ttl": self.remaining(),
            "type": "service",
        }
        if self.ns.path:
            d["namespace_path"] = self.ns.path
        if self.period:
            d["period"] = self.period
        if self.last_renewal:
            d["last_renewal"] = rfc3339(self.last_renewal)
            d["last_renewal_time"] = int(self.last_renewal)
        return d

    def auth_block(self, metadata=None):
        return {
            "client_token": self.id,
            "accessor": self.accessor,
            "policies": list(self.policies),
            "token_policies": list(self.policies),
            "metadata": metadata if metadata is not None else self.meta,
            "lease_duration": self.remaining() if self.expire_at else 0,
            "renewable": self.renewable,
            "entity_id": self.entity_id,
            "token_type": "service",
            "orphan": self.orphan,
            "mfa_requirement": None,
            "num_uses": self.num_uses,
        }


class KVSecret:
    def __init__(self, now):
        self.versions = {}        # n -> dict(data, created, deletion_time, destroyed)
        self.current = 0
        self.oldest = 0
        self.max_versions = 0
        self.cas_required = False
        self.dva = 0
        self.custom_metadata = None
        self.created = now
        self.updated = now


BUILTIN_VAULT = "v" + VAULT_VERSION + "+builtin.vault"


def _listing(m, extra_config, options, running_plugin_version, seal_wrap):
    """One entry of sys/mounts or sys/auth (m: a Mount or an AuthMount)."""
    config = {"default_lease_ttl": m.default_lease_ttl, "force_no_cache": False,
              "max_lease_ttl": m.max_lease_ttl}
    config.update(extra_config)
    return {
        "accessor": m.accessor,
        "config": config,
        "description": m.description,
        "external_entropy_access": False,
        "local": False,
        "options": options,
        "plugin_version": "",
        "running_plugin_version": running_plugin_version,
        "running_sha256": "",
        "seal_wrap": seal_wrap,
        "type": m.type,
        "uuid": m.uuid,
    }


class Mount:
    def __init__(self, path, mtype, version=2, description=""):
        self.path = path          # "secret/"
        self.type = mtype         # "kv", "system"
        self.version = version
        self.description = description
        self.accessor = "%s_%s" % (mtype, secrets.token_hex(4))
        self.uuid = new_uuid()
        self.options = {"version": str(version)} if mtype == "kv" else None
        self.config = {"max_versions": 0, "cas_required": False, "delete_version_after": 0}
        self.secrets = {}         # kv2: key -> KVSecret ; kv1: key -> dict
        self.default_lease_ttl = 0
        self.max_lease_ttl = 0

    def listing(self):
        system = self.type == "system"
        return _listing(self, {}, self.options,
                        BUILTIN_VAULT if system else "v0.16.1+builtin", seal_wrap=system)


class AuthMount:
    def __init__(self, path, mtype, description=""):
        self.path = path          # "cert/"
        self.type = mtype         # token, cert, approle
        self.description = description
        self.accessor = "auth_%s_%s" % (mtype, secrets.token_hex(4))
        self.uuid = new_uuid()
        self.roles = {}           # cert: name -> dict ; approle: name -> dict
        self.secret_ids = {}      # approle: secret_id -> dict
        self.default_lease_ttl = 0
        self.max_lease_ttl = 0

    def listing(self):
        return _listing(self, {"token_type": "default-service"}, None, BUILTIN_VAULT, seal_wrap=False)


class Namespace:
    def __init__(self, name, parent, extra_mounts=()):
        self.name = name
        self.parent = parent
        self.path = (parent.path + name + "/") if parent else ""
        self.id = "root" if parent is None else rand_str(5)
        self.children = {}
        self.custom_metadata = {}
        self.mounts = {"sys/": Mount("sys/", "system", description="system endpoints used for control, policy and debugging")}
        self.mounts["secret/"] = Mount("secret/", "kv", 2, "key/value secret storage")
        for m in extra_mounts:
            p = m.strip("/") + "/"
            if p not in self.mounts:
                self.mounts[p] = Mount(p, "kv", 2)
        self.auth = {"token/": AuthMount("token/", "token", "token based credentials")}
        self.policies = {"default": Policy("default", DEFAULT_POLICY)}

    def ancestors_or_self(self):
        n = self
        while n is not None:
            yield n
            n = n.parent

    def ns_info(self):
        return {"custom_metadata": dict(self.custom_metadata), "id": self.id, "path": self.path}
