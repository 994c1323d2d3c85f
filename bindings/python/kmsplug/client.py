"""client -- Module (a loaded plugin) and Client (one plugin instance) over libkmsloader.

Calls go through the loader's kms_client_* helpers, which check the ABI slots.
ctypes releases the GIL for the whole C call, so many Python threads can be
inside one thread-safe plugin at once; for a plugin without the thread-safe
capability the Client serialises calls itself, as the ABI asks of hosts.

Secrets: a read copies the bytes out of the plugin's kms_secret and frees it
at once with the ABI's free (which wipes the C copy). The Python copy (bytes
or str) cannot be wiped -- Python strings are immutable and the allocator
may keep copies -- so hold secrets no longer than needed.

Thread safety, per method: read*/write/delete/refresh may be called from any
thread at any time; close() waits for calls in flight, after which calls
raise ClientClosedError. Module.client() and Module.close() are thread-safe.
"""

import collections
import ctypes
import logging
import os
import threading
import weakref

from . import _lib
from .errors import ClientClosedError, InvalidArgumentError, UnsupportedError, error_for

Secret = collections.namedtuple("Secret", "value version stale")
Secret.__doc__ = "A secret read: value (bytes), version (backend version, 0 if none), stale (bool)."

PluginInfo = collections.namedtuple("PluginInfo", "name path version abi capabilities status error")
PluginInfo.__doc__ = ("One plugin file of a directory: status is 'OK' or why it cannot load "
                      "(then only name, path and error are meaningful).")

_LOG_LEVELS = {_lib.LOG_ERROR: logging.ERROR, _lib.LOG_WARN: logging.WARNING,
               _lib.LOG_INFO: logging.INFO, _lib.LOG_DEBUG: logging.DEBUG}

_CAP_NAMES = ((_lib.CAP_READ, "read"), (_lib.CAP_WRITE, "write"), (_lib.CAP_DELETE, "delete"),
              (_lib.CAP_REFRESH, "refresh"), (_lib.CAP_THREAD_SAFE, "thread-safe"))


def capability_names(bits):
    return tuple(name for bit, name in _CAP_NAMES if bits & bit)


def _c_text(value, what):
    """str/bytes -> bytes for a C string argument; a NUL inside would cut it short."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
    else:
        raise InvalidArgumentError(f"{what} must be str or bytes, not {type(value).__name__}")
    at = value.find(b"\0")
    if at >= 0:
        raise InvalidArgumentError(f"{what} contains a NUL byte at offset {at}; "
                                   "C strings end at NUL: remove it")
    return value


def _c_path(value, what):
    """A path (str, bytes or os.PathLike) -> bytes, or None when not given."""
    if value is None or value == "":
        return None
    try:
        value = os.fsencode(value)
    except TypeError:
        raise InvalidArgumentError(f"{what} must be a path, not {type(value).__name__}") from None
    return _c_text(value, what)


def _c_bytes(value, what):
    """str/bytes -> bytes for a length-counted value (NULs allowed)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgumentError(f"{what} must be str or bytes, not {type(value).__name__}")


def _setting_text(key, value):
    if isinstance(value, bool):  # before int: bool is an int
        value = "true" if value else "false"
    elif isinstance(value, (int, float)):
        value = str(value)
    return _c_text(value, f"setting '{key}'")


def _raise(status, err):
    raise error_for(status, err.message.decode("utf-8", "replace"), err.backend_status)


def plugin_dir(explicit=None, library=None):
    """The directory the loader would use: explicit, else $KMS_PLUGIN_PATH, else the installed one."""
    lib = _lib.load(library)
    got = lib.kms_plugin_dir(_c_path(explicit, "plugin_dir"))
    return got.decode("utf-8", "replace")


def list_plugins(directory=None, library=None):
    """Every plugin in a directory (resolved like plugin_dir()), sorted by name."""
    lib = _lib.load(library)
    arr = ctypes.POINTER(_lib.PluginInfo_)()
    count = ctypes.c_size_t(0)
    err = _lib.KmsError_()
    st = lib.kms_plugin_list(_c_path(directory, "plugin_dir"),
                             ctypes.byref(arr), ctypes.byref(count), ctypes.byref(err))
    if st:
        _raise(st, err)
    try:
        out = []
        for i in range(count.value):
            e = arr[i]
            out.append(PluginInfo(e.name.decode(), e.path.decode("utf-8", "replace"),
                                  e.version.decode("utf-8", "replace"), (e.abi_major, e.abi_minor),
                                  capability_names(e.capabilities), lib.status_name(e.status),
                                  e.error.decode("utf-8", "replace")))
        return out
    finally:
        lib.kms_plugin_list_free(arr)


def _unload(lib, handle):
    lib.kms_module_unload(handle)


class Module:
    """A plugin shared object, loaded and checked by the loader.

    Module(name, plugin_dir=None, library=None): plugin_dir defaults to
    $KMS_PLUGIN_PATH, then the installed plugin directory (the loader decides).
    Loading errors raise the KmsError subclass the loader reports:
    InvalidArgumentError (bad name), NotFoundError (no such file; the message
    lists the plugins present), PermissionDeniedError (group/world-writable
    file or directory), UnsupportedError (not a plugin, wrong ABI).
    """

    def __init__(self, name, plugin_dir=None, library=None):
        self._lib = lib = _lib.load(library)
        handle = ctypes.c_void_p()
        err = _lib.KmsError_()
        st = lib.kms_module_load(_c_path(plugin_dir, "plugin_dir"),
                                 _c_text(name, "plugin name"), ctypes.byref(handle), ctypes.byref(err))
        if st:
            _raise(st, err)
        self._handle = handle.value
        table = lib.kms_module_plugin(self._handle).contents
        self.name = table.name.decode()
        self.version = table.version.decode("utf-8", "replace") if table.version else ""
        self.abi = (table.abi_major, table.abi_minor)
        self.capability_bits = table.capabilities
        self.capabilities = capability_names(table.capabilities)
        self.path = lib.kms_module_path(self._handle).decode("utf-8", "replace")
        self._lock = threading.RLock()  # re-entered: closing an owning client closes its module
        self._clients = weakref.WeakSet()
        self._finalizer = weakref.finalize(self, _unload, lib, self._handle)

    @property
    def library(self):
        return self._lib

    def client(self, settings=None, env=None, logger=None):
        """A new Client of this plugin (see Client)."""
        return Client(self, settings, env, logger)


    def close(self):
        """Close every client of this module, then unload it. Idempotent."""
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            c.close()
        with self._lock:  # no create runs now; later ones see the module closed
            for c in list(self._clients):
                c.close()
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<kmsplug.Module {self.name} {self.version} ABI {self.abi[0]}.{self.abi[1]} {self.path}>"


def _destroy(lib, handle, _keepalive):
    lib.kms_client_destroy(handle)


class _HostServices:
    """The kms_host table a client hands its plugin: log into Python logging,
    and getenv from a fixed mapping when one is given (else the process
    environment). Lives as long as the client (the ABI requires it)."""

    def __init__(self, logger, env):
        self.logger = logger
        self.log_fn = _lib.LOG_FN(self._log)
        self.env = None
        self.getenv_fn = _lib.GETENV_FN()  # NULL: the plugin uses the process environment
        if env is not None:
            self.env = {_c_text(k, "environment name"): ctypes.create_string_buffer(
                _c_text(v, f"environment variable '{k}'")) for k, v in env.items()}
            self.getenv_fn = _lib.GETENV_FN(self._getenv)
        self.table = _lib.Host_(ctypes.sizeof(_lib.Host_), _lib.ABI_MAJOR, _lib.ABI_MINOR, None,
                                self.log_fn, self.getenv_fn)

    def _log(self, _ctx, level, message):
        try:  # an exception must never cross back into C
            self.logger.log(_LOG_LEVELS.get(level, logging.WARNING), "%s",
                            (message or b"").decode("utf-8", "replace"))
        except Exception:  # pylint: disable=broad-except
            pass

    def _getenv(self, _ctx, name):
        buf = self.env.get(name)  # the buffer outlives the call: the ABI's borrow rule
        return ctypes.addressof(buf) if buf is not None else None


class Client:
    """One plugin instance. Create with Module.client() or kmsplug.open().

    settings: mapping (or pairs) of key_management_settings, as strings
    (bool -> "true"/"false", numbers -> str). env: a mapping the plugin reads
    instead of the process environment (None: the process environment).
    logger: where the plugin's log lines go (default kmsplug.plugin.<name>).
    """

    def __init__(self, module, settings=None, env=None, logger=None):
        self.module = module
        lib = self._lib = module.library
        pairs = list(settings.items() if hasattr(settings, "items") else settings or ())
        keep = [(_c_text(k, "setting name"), _setting_text(k, v)) for k, v in pairs]
        arr = (_lib.Setting_ * max(1, len(keep)))(*[_lib.Setting_(k, v) for k, v in keep])
        self._host = _HostServices(logger or logging.getLogger(f"kmsplug.plugin.{module.name}"), env)
        handle = ctypes.c_void_p()
        err = _lib.KmsError_()
        with module._lock:  # the module cannot be closed (unloaded) under a create
            if not module._finalizer.alive:
                raise ClientClosedError(f"plugin module '{module.name}' was closed")
            st = lib.kms_client_create(module._handle, ctypes.byref(self._host.table), arr, len(keep),
                                       ctypes.byref(handle), ctypes.byref(err))
            del keep, arr  # settings are borrowed for create() only
            if st:
                _raise(st, err)
            self._handle = handle.value
            module._clients.add(self)
        self._thread_safe = bool(module.capability_bits & _lib.CAP_THREAD_SAFE)
        self._serial = threading.Lock()
        self._cond = threading.Condition()
        self._inflight = 0
        self._closed = False
        self._finalizer = weakref.finalize(self, _destroy, lib, self._handle, (self._host, module))

    # -- plumbing -----------------------------------------------------------

    def _run(self, op):
        """Run op(handle) unless closed; serialised when the plugin is not thread-safe."""
        with self._cond:
            if self._closed:
                raise ClientClosedError(f"client of plugin '{self.module.name}' is closed")
            self._inflight += 1
        try:
            if self._thread_safe:
                return op(self._handle)
            with self._serial:
                return op(self._handle)
        finally:
            with self._cond:
                self._inflight -= 1
                if self._inflight == 0:
                    self._cond.notify_all()

    def _need(self, feature, what, keys=()):
        """Raise UNSUPPORTED for an ABI 1.1 feature (no 1.1 loader call is known yet)."""
        detail = f" ({', '.join(sorted(keys))})" if keys else ""
        raise UnsupportedError(
            f"{what}{detail} needs kmsplug ABI 1.1; the loader {self._lib.path} and plugin "
            f"'{self.module.name}' (ABI {self.module.abi[0]}.{self.module.abi[1]}) offer ABI 1.0 "
            "only, where a client has one location: create a separate client (its own settings "
            "and environment) per location")

    # -- operations ---------------------------------------------------------

    def read_secret(self, name, options=None):
        """Read `name` -> Secret(value bytes, version, stale). Raises a KmsError subclass."""
        if options:
            self._need("options", "per-call read options", options)
        cname = _c_text(name, "secret name")
        lib = self._lib

        def op(handle):
            out = ctypes.POINTER(_lib.Secret_)()
            err = _lib.KmsError_()
            st = lib.kms_client_read(handle, cname, ctypes.byref(out), ctypes.byref(err))
            if st:
                _raise(st, err)
            try:
                s = out.contents
                value = ctypes.string_at(s.value, s.length)
                size = s.struct_size  # kms_secret is size-prefixed: read what the plugin wrote
                version = s.version if size >= _lib.Secret_.version.offset + 8 else 0
                flags = s.flags if size >= _lib.Secret_.flags.offset + 4 else 0
            finally:
                lib.kms_client_free_secret(handle, out)  # wipes the C copy
            return Secret(value, version, bool(flags & _lib.KMS_SECRET_STALE))

        return self._run(op)

    def read(self, name, options=None):
        """The value of `name` as bytes."""
        return self.read_secret(name, options).value

    def read_text(self, name, options=None, encoding="utf-8"):
        """The value of `name` decoded (strict: undecodable bytes raise UnicodeDecodeError)."""
        return self.read_secret(name, options).value.decode(encoding)

    def write(self, name, value, description=None, cas=None, options=None):
        """Create or replace `name` (value: str -> UTF-8, or bytes, NULs allowed).
        description: stored beside the secret if the plugin can. cas: write only
        if the current version equals this (0: only if absent), else ConflictError."""
        if options:
            self._need("options", "per-call write options", options)
        cname = _c_text(name, "secret name")
        data = _c_bytes(value, "secret value")
        opts = _lib.WriteOptions_(ctypes.sizeof(_lib.WriteOptions_),
                                  _c_text(description, "description") if description is not None else None,
                                  _lib.KMS_WRITE_CAS if cas is not None else 0, cas or 0)
        lib = self._lib

        def op(handle):
            err = _lib.KmsError_()
            st = lib.kms_client_write(handle, cname, data, len(data), ctypes.byref(opts), ctypes.byref(err))
            if st:
                _raise(st, err)

        self._run(op)

    def delete(self, name, options=None):
        """Delete `name`; deleting a missing secret succeeds (the ABI's rule)."""
        if options:
            self._need("options", "per-call delete options", options)
        cname = _c_text(name, "secret name")
        lib = self._lib

        def op(handle):
            err = _lib.KmsError_()
            st = lib.kms_client_delete(handle, cname, ctypes.byref(err))
            if st:
                _raise(st, err)

        self._run(op)

    def refresh(self):
        """Revalidate credentials and re-read cached secrets now."""
        lib = self._lib

        def op(handle):
            err = _lib.KmsError_()
            st = lib.kms_client_refresh(handle, ctypes.byref(err))
            if st:
                _raise(st, err)

        self._run(op)

    def list(self, prefix=""):
        """Names under `prefix` (ABI 1.1; UnsupportedError with ABI 1.0)."""
        self._need("list", "listing secrets")

    def health(self):
        """Backend health and statistics (ABI 1.1; UnsupportedError with ABI 1.0)."""
        self._need("health", "health and statistics")

    @property
    def supports_options(self):
        return self._lib.has_feature("options")

    # -- lifetime -----------------------------------------------------------

    def close(self):
        """Wait for calls in flight, then destroy the instance. Idempotent."""
        with self._cond:
            self._closed = True
            while self._inflight:
                self._cond.wait()
        self._finalizer()
        owned = self.__dict__.pop("_owned_module", None)  # pop: Module.close() calls back here
        if owned is not None:
            owned.close()

    def abandon(self):
        """For a forked child only: forget this client without destroying it.
        The instance's threads did not survive fork(), so destroy() would wait
        on them; the parent still owns and destroys the real instance."""
        with self._cond:
            self._closed = True
        self._finalizer.detach()
        owned = self.__dict__.pop("_owned_module", None)
        if owned is not None:
            owned._finalizer.detach()  # pylint: disable=protected-access

    @property
    def closed(self):
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else "open"
        return f"<kmsplug.Client {self.module.name} ({state})>"


def open_client(plugin, settings=None, *, plugin_dir=None, library=None, env=None, logger=None):
    """Load `plugin` and create a client that owns its module (closing the
    client unloads the plugin). The usual entry point: kmsplug.open(...)."""
    module = Module(plugin, plugin_dir, library)
    try:
        c = module.client(settings, env, logger)
    except BaseException:
        module.close()
        raise
    c._owned_module = module  # pylint: disable=protected-access
    return c
