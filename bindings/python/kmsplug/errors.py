"""errors -- one exception class per kms_status.

Every failed call raises a subclass of KmsError carrying the status (number
and name), the backend's own status (an HTTP code for Vault, or 0) and the
plugin's message, which the ABI guarantees never holds a secret or a token.
An unknown status number (a newer plugin) becomes InternalError, as the ABI
asks of hosts, with the number kept in `status`.
"""

OK = 0
NOT_FOUND = 1
INVALID_ARGUMENT = 2
PERMISSION_DENIED = 3
UNAUTHENTICATED = 4
UNAVAILABLE = 5
CONFLICT = 6
UNSUPPORTED = 7
NO_MEMORY = 8
INTERNAL = 9
BUFFER_TOO_SMALL = 10  # Added in ABI 1.1 (read_into only)

STATUS_NAMES = {OK: "OK", NOT_FOUND: "NOT_FOUND", INVALID_ARGUMENT: "INVALID_ARGUMENT",
                PERMISSION_DENIED: "PERMISSION_DENIED", UNAUTHENTICATED: "UNAUTHENTICATED",
                UNAVAILABLE: "UNAVAILABLE", CONFLICT: "CONFLICT", UNSUPPORTED: "UNSUPPORTED",
                NO_MEMORY: "NO_MEMORY", INTERNAL: "INTERNAL",
                BUFFER_TOO_SMALL: "BUFFER_TOO_SMALL"}


class KmsError(Exception):
    """A kmsplug call failed. Attributes: status (int), status_name,
    backend_status (int), message (the plugin's text)."""

    status = INTERNAL

    def __init__(self, message, backend_status=0, status=None):
        if status is not None:
            self.status = status
        self.status_name = STATUS_NAMES.get(self.status, "UNKNOWN")
        self.backend_status = backend_status
        self.message = message
        super().__init__(message)

    def __str__(self):
        backend = f" (backend status {self.backend_status})" if self.backend_status else ""
        return f"{self.status_name}: {self.message}{backend}"


class NotFoundError(KmsError):
    status = NOT_FOUND


class InvalidArgumentError(KmsError, ValueError):
    status = INVALID_ARGUMENT


class PermissionDeniedError(KmsError, PermissionError):
    status = PERMISSION_DENIED


class UnauthenticatedError(KmsError):
    status = UNAUTHENTICATED


class UnavailableError(KmsError):
    status = UNAVAILABLE


class ConflictError(KmsError):
    status = CONFLICT


class UnsupportedError(KmsError, NotImplementedError):
    status = UNSUPPORTED


class NoMemoryError(KmsError, MemoryError):
    status = NO_MEMORY


class InternalError(KmsError):
    status = INTERNAL


class BufferTooSmallError(KmsError):
    """read_into's buffer cannot hold the value; `needed` is the value's
    length plus one (its NUL), the buffer size that fits."""

    status = BUFFER_TOO_SMALL

    def __init__(self, message, backend_status=0, status=None, needed=0):
        super().__init__(message, backend_status, status)
        self.needed = needed


ERRORS = {cls.status: cls for cls in (NotFoundError, InvalidArgumentError, PermissionDeniedError,
                                      UnauthenticatedError, UnavailableError, ConflictError,
                                      UnsupportedError, NoMemoryError, InternalError,
                                      BufferTooSmallError)}


def error_for(status, message, backend_status=0):
    """The exception for a non-OK status (unknown numbers -> InternalError)."""
    cls = ERRORS.get(status)
    if cls is None:
        return InternalError(f"unknown status {status}: {message}", backend_status, status=status)
    return cls(message, backend_status)


class ClientClosedError(RuntimeError):
    """A call on a Client (or Module) that was closed."""
