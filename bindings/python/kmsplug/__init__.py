"""kmsplug -- Python binding of the kmsplug plugin ABI (libkmsloader, via ctypes).

    import kmsplug
    with kmsplug.open("hashicorp_vault", {"access_mode": "read_and_write"}) as c:
        c.write("litellm/sk-alias", "sk-...")
        key = c.read_text("OPENAI_API_KEY")

Standard library only; the C library is found as described in kmsplug._lib.
Errors are KmsError subclasses, one per kms_status (kmsplug.errors).
kmsplug.litellm holds the LiteLLM CustomSecretManager bridge.
"""

from .client import (Change, Client, Module, PluginInfo, ReadInfo, Secret, capability_names, list_plugins,
                     open_client as open, plugin_dir)  # noqa: A001 -- kmsplug.open mirrors io.open
from .errors import (BufferTooSmallError, ClientClosedError, ConflictError, InternalError, InvalidArgumentError, KmsError,
                     NoMemoryError, NotFoundError, PermissionDeniedError, UnauthenticatedError,
                     UnavailableError, UnsupportedError, error_for)
from ._lib import LIBRARY_ENV, LibraryError

__version__ = "0.1.0"

__all__ = ["BufferTooSmallError", "Change", "Client", "Module", "PluginInfo", "ReadInfo", "Secret", "capability_names", "list_plugins", "open",
           "plugin_dir", "ClientClosedError", "ConflictError", "InternalError",
           "InvalidArgumentError", "KmsError", "NoMemoryError", "NotFoundError",
           "PermissionDeniedError", "UnauthenticatedError", "UnavailableError", "UnsupportedError",
           "error_for", "LIBRARY_ENV", "LibraryError"]
