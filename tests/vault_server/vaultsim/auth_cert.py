"""The cert auth method: roles at auth/:mount/certs/:name and login by TLS
client certificate (verified with testserver.x509, pure Python).

Thread safety: called with Vault.lock held (core.Vault.handle).
"""


from testserver.core import Response
from testserver.x509 import X509, hex_colon, pem_to_ders

from . import clock
from .api import Route, no_content, ok
from .base import bad, not_found, unsupported_op, unsupported_path
from .convert import conv_error, glob_match, to_strlist, unknown_param_warning


class CertMixin:
    """auth/:mount/ of type cert (mixed into core.Vault)."""

    CERT_FIELDS = ("name", "certificate", "display_name", "allowed_common_names", "allowed_names",
                   "allowed_dns_sans", "allowed_email_sans", "allowed_uri_sans",
                   "allowed_organizational_units", "required_extensions",
                   "allowed_metadata_extensions", "ocsp_enabled", "ocsp_ca_certificates",
                   "ocsp_servers_override", "ocsp_fail_open", "ocsp_query_all_servers", "lease")

    def route_cert(self, req, am, sub, op):
        R = Route
        sub = sub.rstrip("/")
        if sub == "login":
            return R(lambda: self.cert_login(req, am) if op == "update" else unsupported_op(), op, unauth=True)
        if sub == "certs":
            return R(lambda: self._list_roles(am, op), op)
        if sub.startswith("certs/"):
            name = sub[len("certs/"):].lower()
            return R(lambda: self.cert_role(am, name, req, op), op if op != "update" or name in am.roles else "create")
        if sub == "config":
            return R(lambda: Response(204) if op == "update" else
                     (ok({"disable_binding": False, "enable_identity_alias_metadata": False,
                          "ocsp_cache_size": 100, "role_cache_size": 200}, mount_type="cert")
                      if op == "read" else unsupported_op()), op)
        return R(unsupported_path, op)

    def cert_role(self, am, name, req, op):
        if not name:
            raise bad("missing name")
        if op == "read":
            role = am.roles.get(name)
            if role is None:
                not_found()
            data = {
                "certificate": role["certificate"],
                "display_name": role["display_name"],
                "allowed_common_names": list(role["allowed_common_names"]),
                "allowed_names": list(role["allowed_common_names"]),
                "allowed_dns_sans": list(role["allowed_dns_sans"]),
                "allowed_email_sans": [], "allowed_uri_sans": [],
                "allowed_organizational_units": list(role["allowed_organizational_units"]),
                "allowed_metadata_extensions": [], "required_extensions": [],
                "ocsp_enabled": False, "ocsp_ca_certificates": "", "ocsp_servers_override": [],
                "ocsp_fail_open": False, "ocsp_query_all_servers": False,
                "ttl": role.get("token_ttl", 0), "max_ttl": role.get("token_max_ttl", 0),
                "bound_cidrs": [],
            }
            data.update(self._token_fields_out(role))
            return ok(data, mount_type="cert")
        if op == "update":
            d = req.data
            warn = unknown_param_warning(d, self.CERT_FIELDS + self.TOKEN_FIELDS)
            role = dict(am.roles.get(name) or {
                "certificate": "", "ders": [], "display_name": name,
                "allowed_common_names": [], "allowed_dns_sans": [],
                "allowed_organizational_units": []})
            if "certificate" in d:
                cert = d["certificate"]
                if not isinstance(cert, str):
                    raise conv_error(cert, "certificate", "string")
                role["certificate"] = cert
            if not role["certificate"]:
                raise bad("must specify certificate")
            ders = pem_to_ders(role["certificate"])
            if not ders:
                raise bad("failed to parse certificate")
            try:
                for der in ders:
                    X509(der)
            except Exception:
                raise bad("failed to parse certificate")
            role["ders"] = ders
            if d.get("display_name"):
                role["display_name"] = str(d["display_name"])
            acn = d.get("allowed_common_names", d.get("allowed_names"))
            if acn is not None:
                role["allowed_common_names"] = to_strlist(acn, "allowed_common_names")
            if "allowed_dns_sans" in d:
                role["allowed_dns_sans"] = to_strlist(d["allowed_dns_sans"], "allowed_dns_sans")
            if "allowed_organizational_units" in d:
                role["allowed_organizational_units"] = to_strlist(d["allowed_organizational_units"], "allowed_organizational_units")
            self._apply_token_fields(role, d)
            am.roles[name] = role
            return no_content([warn] if warn else None, mount_type="cert")
        if op == "delete":
            am.roles.pop(name, None)
            return Response(204)
        unsupported_op()

    def cert_login(self, req, am):
        d = req.data
        name = str(d.get("name", "") or "").lower()
        if not req.is_tls:
            raise bad("tls connection required")
        if not req.peer_der:
            raise bad("client certificate must be supplied")
        try:
            leaf = X509(req.peer_der)
        except Exception:
            raise bad("invalid certificate or no client certificate supplied")
        now = clock.now()
        if name:
            candidates = [(name, am.roles[name])] if name in am.roles else []
        else:
            candidates = sorted(am.roles.items())
        trusted = []
        if leaf.not_before <= now <= leaf.not_after:
            for rn, role in candidates:
                for der in role["ders"]:
                    if der == leaf.der:
                        trusted.append((rn, role))
                        break
                    c = X509(der)
                    if (leaf.issuer_raw == c.subject_raw and c.not_before <= now <= c.not_after
                            and leaf.verify_signed_by(c)):
                        trusted.append((rn, role))
                        break
        if not trusted:
            raise bad("invalid certificate or no client certificate supplied")
        cn = leaf.common_name()
        for rn, role in trusted:
            acn = role["allowed_common_names"]
            if acn and not any(glob_match(p, cn) for p in acn):
                continue
            metadata = {
                "authority_key_id": hex_colon(leaf.aki),
                "cert_name": rn,
                "common_name": cn,
                "serial_number": str(leaf.serial),
                "subject_key_id": hex_colon(leaf.ski),
            }
            return self.issue_login_token(req.ns, am, role, "%s-%s" % (am.path.rstrip("/"), role["display_name"] or rn), metadata)
        raise bad("no chain matching all constraints could be found for this login certificate")
