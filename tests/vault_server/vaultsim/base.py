"""Vault's constants, error strings and the error type every handler raises.

Thread safety: constants and stateless helpers only.
"""

from testserver.core import ProtocolError

VAULT_VERSION = "1.15.6"
SYS_MAX_TTL = 768 * 3600          # Vault's default max_lease_ttl (32 days)
SYS_DEFAULT_TTL = 768 * 3600      # Vault's default default_lease_ttl
DEFAULT_MAX_VERSIONS = 10

# Error strings exactly as Vault renders them (Go multierror formatting).
ERR_DENIED = "1 error occurred:\n\t* permission denied\n\n"
ERR_INVALID_TOKEN = "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"
ERR_UNSUPPORTED_OP = "1 error occurred:\n\t* unsupported operation\n\n"
ERR_UNSUPPORTED_PATH = "1 error occurred:\n\t* unsupported path\n\n"
ERR_CAS_MISMATCH = "check-and-set parameter did not match the current version"
ERR_CAS_REQUIRED = "check-and-set parameter required for this call"


class VaultError(ProtocolError):
    """An error answered as {"errors": [...]} with the given status."""

    def __init__(self, status, errors=None, headers=None):
        super().__init__(status, errors, headers)

    @property
    def errors(self):
        return self.messages


def bad(msg):
    return VaultError(400, [msg])


def unsupported_op():
    raise VaultError(405, [ERR_UNSUPPORTED_OP])


def unsupported_path():
    raise VaultError(404, [ERR_UNSUPPORTED_PATH])


def not_found():
    raise VaultError(404, [])
