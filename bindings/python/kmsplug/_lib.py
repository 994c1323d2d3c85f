"""_lib -- find libkmsloader and declare its C API for ctypes.

The structs mirror plugin_api/kms_plugin.h and kms_loader.h (ABI 1.1; the
1.1 additions are marked). Only this module knows C layouts and prototypes;
everything above it speaks Python. The 1.0 calls are required; the 1.1 calls
are bound when the library exports them (an older loader lacks them, and the
client then reports UNSUPPORTED naming what is missing).

Where the library comes from (first that applies):
  1. the explicit `library` argument (a path or a soname);
  2. $KMSPLUG_LIBRARY;
  3. the path `cmake --install` recorded in kmsplug/_install.py;
  4. ctypes.util.find_library("kmsloader") (the linker cache / LD_LIBRARY_PATH).
A library that cannot be opened, or that lacks the ABI 1.0 calls, is a
LibraryError naming where it was looked for and how to point at it.
"""

import ctypes
import ctypes.util
import os
import threading

LIBRARY_ENV = "KMSPLUG_LIBRARY"

# kms_plugin.h sizes that are part of the frozen 1.0 layout.
ERROR_MESSAGE_SIZE = 256
PLUGIN_NAME_MAX = 64

ABI_MAJOR = 1
ABI_MINOR = 1  # the kms_host table below is the 1.1 one (with notify)

KMS_SECRET_STALE = 0x1
KMS_WRITE_CAS = 0x1

CAP_READ = 0x1
CAP_WRITE = 0x2
CAP_DELETE = 0x4
CAP_REFRESH = 0x8
CAP_THREAD_SAFE = 0x10
CAP_LIST = 0x20    # Added in 1.1
CAP_NOTIFY = 0x40  # Added in 1.1

# kms_call_options.flags / delete_mode, kms_change.kind. Added in 1.1.
CALL_NONBLOCKING = 0x1
CALL_BYPASS_CACHE = 0x2
DELETE_DEFAULT, DELETE_SOFT, DELETE_PERMANENT = 0, 1, 2
CHANGE_UPDATED, CHANGE_DELETED = 1, 2
HEALTH_STATUS_SLOTS = 16

LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG = 0, 1, 2, 3


class LibraryError(OSError):
    """libkmsloader could not be found or is not a kmsplug loader."""


class KmsError_(ctypes.Structure):  # kms_error: caller-owned, frozen for major 1
    _fields_ = [("status", ctypes.c_int),
                ("backend_status", ctypes.c_int32),
                ("message", ctypes.c_char * ERROR_MESSAGE_SIZE)]


class Secret_(ctypes.Structure):  # kms_secret: size-prefixed, plugin-owned
    _fields_ = [("struct_size", ctypes.c_size_t),
                ("value", ctypes.c_void_p),
                ("length", ctypes.c_size_t),
                ("version", ctypes.c_int64),
                ("flags", ctypes.c_uint32)]


class Setting_(ctypes.Structure):  # kms_setting
    _fields_ = [("key", ctypes.c_char_p), ("value", ctypes.c_char_p)]


class WriteOptions_(ctypes.Structure):  # kms_write_options: size-prefixed
    _fields_ = [("struct_size", ctypes.c_size_t),
                ("description", ctypes.c_char_p),
                ("flags", ctypes.c_uint32),
                ("cas_version", ctypes.c_uint64)]


class CallOptions_(ctypes.Structure):  # kms_call_options: size-prefixed. Added in 1.1.
    _fields_ = [("struct_size", ctypes.c_size_t),
                ("flags", ctypes.c_uint32),
                ("location", ctypes.POINTER(Setting_)),
                ("n_location", ctypes.c_size_t),
                ("version", ctypes.c_int64),
                ("delete_mode", ctypes.c_uint32),
                ("recovery_window_days", ctypes.c_uint32)]


class SecretInfo_(ctypes.Structure):  # kms_secret_info: caller-allocated. Added in 1.1.
    _fields_ = [("struct_size", ctypes.c_size_t),
                ("length", ctypes.c_size_t),
                ("version", ctypes.c_int64),
                ("flags", ctypes.c_uint32)]


class Health_(ctypes.Structure):  # kms_health: caller-allocated. Added in 1.1.
    _fields_ = [("struct_size", ctypes.c_size_t),
                ("reachable", ctypes.c_int32),
                ("authenticated", ctypes.c_int32),
                ("token_ttl_seconds", ctypes.c_int64),
                ("cache_entries", ctypes.c_uint64),
                ("hits", ctypes.c_uint64),
                ("misses", ctypes.c_uint64),
                ("negative_hits", ctypes.c_uint64),
                ("stale_serves", ctypes.c_uint64),
                ("fetches", ctypes.c_uint64),
                ("logins", ctypes.c_uint64),
                ("renewals", ctypes.c_uint64),
                ("errors_by_status", ctypes.c_uint64 * HEALTH_STATUS_SLOTS),
                ("last_error_status", ctypes.c_int),
                ("last_error_time", ctypes.c_int64),
                ("last_error", ctypes.c_char * ERROR_MESSAGE_SIZE)]


class Change_(ctypes.Structure):  # kms_change: plugin-written, size-prefixed. Added in 1.1.
    _fields_ = [("struct_size", ctypes.c_size_t),
                ("name", ctypes.c_char_p),
                ("kind", ctypes.c_uint32),
                ("version", ctypes.c_int64),
                ("location", ctypes.POINTER(Setting_)),
                ("n_location", ctypes.c_size_t)]


LIST_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)  # kms_list_fn
NOTIFY_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(Change_))

LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)
# getenv returns a borrowed pointer: c_void_p so ctypes never converts (and
# frees) a temporary bytes object behind the plugin's back.
GETENV_FN = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)


class Host_(ctypes.Structure):  # kms_host: size-prefixed, host-owned
    _fields_ = [("struct_size", ctypes.c_size_t),
                ("abi_major", ctypes.c_uint32),
                ("abi_minor", ctypes.c_uint32),
                ("ctx", ctypes.c_void_p),
                ("log", LOG_FN),
                ("getenv", GETENV_FN),
                ("notify", NOTIFY_FN)]  # Added in 1.1


# kms_plugin's function slots in table order, as opaque pointers: the binding
# only needs their offsets (for kms_slot_available), never calls them.
PLUGIN_SLOTS = ("create", "destroy", "read_secret", "write_secret", "delete_secret", "refresh",
                "free_secret",
                # Added in 1.1
                "read_secret_opt", "write_secret_opt", "delete_secret_opt", "read_secret_into",
                "list_secrets", "health")


class Plugin_(ctypes.Structure):  # kms_plugin. Never read a slot directly: a 1.0
    # table ends earlier (struct_size); ask kms_slot_available.
    _fields_ = [("struct_size", ctypes.c_size_t),
                ("abi_major", ctypes.c_uint32),
                ("abi_minor", ctypes.c_uint32),
                ("name", ctypes.c_char_p),
                ("version", ctypes.c_char_p),
                ("capabilities", ctypes.c_uint64)] + [(n, ctypes.c_void_p) for n in PLUGIN_SLOTS]


class PluginInfo_(ctypes.Structure):  # kms_plugin_info
    _fields_ = [("name", ctypes.c_char * (PLUGIN_NAME_MAX + 1)),
                ("path", ctypes.c_char * 4096),
                ("version", ctypes.c_char * 64),
                ("abi_major", ctypes.c_uint32),
                ("abi_minor", ctypes.c_uint32),
                ("capabilities", ctypes.c_uint64),
                ("status", ctypes.c_int),
                ("error", ctypes.c_char * ERROR_MESSAGE_SIZE)]


_P = ctypes.c_void_p
_ERR = ctypes.POINTER(KmsError_)
# name -> (restype, argtypes): every ABI 1.0 call the binding uses.
_PROTOTYPES = {
    "kms_status_str": (ctypes.c_char_p, [ctypes.c_int]),
    "kms_module_load": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(_P), _ERR]),
    "kms_module_plugin": (ctypes.POINTER(Plugin_), [_P]),
    "kms_module_path": (ctypes.c_char_p, [_P]),
    "kms_module_unload": (None, [_P]),
    "kms_plugin_list": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ctypes.POINTER(PluginInfo_)),
                                       ctypes.POINTER(ctypes.c_size_t), _ERR]),
    "kms_plugin_list_free": (None, [ctypes.POINTER(PluginInfo_)]),
    "kms_plugin_dir": (ctypes.c_char_p, [ctypes.c_char_p]),
    "kms_capabilities_str": (ctypes.c_char_p, [ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t]),
    "kms_client_create": (ctypes.c_int, [_P, ctypes.POINTER(Host_), ctypes.POINTER(Setting_),
                                         ctypes.c_size_t, ctypes.POINTER(_P), _ERR]),
    "kms_client_destroy": (None, [_P]),
    "kms_client_read": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.POINTER(ctypes.POINTER(Secret_)), _ERR]),
    "kms_client_write": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                                        ctypes.POINTER(WriteOptions_), _ERR]),
    "kms_client_delete": (ctypes.c_int, [_P, ctypes.c_char_p, _ERR]),
    "kms_client_refresh": (ctypes.c_int, [_P, _ERR]),
    "kms_client_free_secret": (None, [_P, ctypes.POINTER(Secret_)]),
    "kms_slot_available": (ctypes.c_int, [ctypes.POINTER(Plugin_), ctypes.c_size_t, ctypes.c_size_t]),
}

_OPT = ctypes.POINTER(CallOptions_)
# The ABI 1.1 loader calls (kms_loader.h "Added in 1.1"): bound when present.
_PROTOTYPES_11 = {
    "kms_client_read_opt": (ctypes.c_int, [_P, ctypes.c_char_p, _OPT,
                                           ctypes.POINTER(ctypes.POINTER(Secret_)), _ERR]),
    "kms_client_write_opt": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                                            ctypes.POINTER(WriteOptions_), _OPT, _ERR]),
    "kms_client_delete_opt": (ctypes.c_int, [_P, ctypes.c_char_p, _OPT, _ERR]),
    "kms_client_read_into": (ctypes.c_int, [_P, ctypes.c_char_p, _OPT, ctypes.c_void_p,
                                            ctypes.c_size_t, ctypes.POINTER(SecretInfo_), _ERR]),
    "kms_client_list": (ctypes.c_int, [_P, ctypes.c_char_p, _OPT, LIST_FN, ctypes.c_void_p, _ERR]),
    "kms_client_list_names": (ctypes.c_int, [_P, ctypes.c_char_p, _OPT,
                                             ctypes.POINTER(ctypes.POINTER(ctypes.c_char_p)),
                                             ctypes.POINTER(ctypes.c_size_t), _ERR]),
    "kms_client_list_names_free": (None, [ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t]),
    "kms_client_health": (ctypes.c_int, [_P, ctypes.POINTER(Health_), _ERR]),
}

# Each 1.1 feature -> the loader symbols it needs.
ABI11_FEATURES = {
    "options": ("kms_client_read_opt", "kms_client_write_opt", "kms_client_delete_opt"),
    "read_into": ("kms_client_read_into",),
    "list": ("kms_client_list_names", "kms_client_list_names_free"),
    "health": ("kms_client_health",),
}


class Library:
    """One opened libkmsloader with its prototypes set. Thread-safe: it is
    immutable after __init__."""

    def __init__(self, path):
        self.path = path
        try:
            self.cdll = ctypes.CDLL(path)
        except OSError as e:
            raise LibraryError(f"cannot open libkmsloader '{path}': {e}. Point {LIBRARY_ENV} "
                               f"at libkmsloader.so (build tree: build/plugin_api/libkmsloader.so)") from e
        missing = [n for n in _PROTOTYPES if not hasattr(self.cdll, n)]
        if missing:
            raise LibraryError(f"'{path}' is not a kmsplug loader (ABI {ABI_MAJOR}.{ABI_MINOR}): "
                               f"missing {', '.join(missing)}")
        for name, (restype, argtypes) in _PROTOTYPES.items():
            fn = getattr(self.cdll, name)
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)
        for name, (restype, argtypes) in _PROTOTYPES_11.items():
            if hasattr(self.cdll, name):
                fn = getattr(self.cdll, name)
                fn.restype = restype
                fn.argtypes = argtypes
                setattr(self, name, fn)

    def has_feature(self, feature):
        """True when every loader symbol the ABI 1.1 feature needs is exported.
        Looked up each time (cheap): tests narrow ABI11_FEATURES to simulate
        an older loader."""
        return all(hasattr(self, s) for s in ABI11_FEATURES[feature])

    def status_name(self, status):
        return self.kms_status_str(status).decode("ascii")


def _installed_library():
    try:
        from . import _install  # written by `cmake --install`
    except ImportError:
        return None
    return getattr(_install, "LIBRARY", None)


def candidates(explicit=None):
    """[(source, path)] in the order they are tried (see the module docstring)."""
    out = []
    if explicit:
        out.append(("argument", os.fspath(explicit)))
    env = os.environ.get(LIBRARY_ENV)
    if env:
        out.append((f"${LIBRARY_ENV}", env))
    installed = _installed_library()
    if installed:
        out.append(("installed location", installed))
    found = ctypes.util.find_library("kmsloader")
    if found:
        out.append(("find_library", found))
    return out


_cache = {}
_cache_lock = threading.Lock()


def load(explicit=None):
    """The Library for the first candidate; the same object for the same path.
    Only the first candidate is used: a wrong explicit path or $KMSPLUG_LIBRARY
    is an error, never silently replaced by another library."""
    found = candidates(explicit)
    if not found:
        raise LibraryError(f"libkmsloader not found: pass library=..., set {LIBRARY_ENV}, install "
                           "kmsplug (cmake --install) or add its libdir to the linker cache (ldconfig)")
    source, path = found[0]
    with _cache_lock:
        lib = _cache.get(path)
        if lib is None:
            try:
                lib = Library(path)
            except LibraryError as e:
                raise LibraryError(f"{e} (from {source})") from None
            _cache[path] = lib
        return lib
