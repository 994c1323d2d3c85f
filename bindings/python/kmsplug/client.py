"""client -- Module (a loaded plugin) and Client (one plugin instance) over libkmsloader.

Calls go through the loader's kms_client_* helpers, which check the ABI slots
(ABI 1.1: per-call options, read_into, list, health; with default options
the 1.0 calls are used, so a 1.0 loader or plugin serves them unchanged).
ctypes releases the GIL for the whole C call, so many Python threads can be
inside one thread-safe plugin at once; for a plugin without the thread-safe
capability the Client serialises calls itself, as the ABI asks of hosts.

Secrets: a read copies the bytes out of the plugin's kms_secret and frees it
at once with the ABI's free (which wipes the C copy). The Python copy (bytes
or str) cannot be wiped -- Python strings are immutable and the allocator
may keep copies -- so hold secrets no longer than needed.

Thread safety, per method: read*/write/delete/refresh/list/health may be
called from any thread at any time; close() waits for calls in flight, after which calls
raise ClientClosedError. Module.client() and Module.close() are thread-safe.
"""

import collections
import ctypes
import logging
import os
import threading
import weakref

from . import _lib, errors
from .errors import (BufferTooSmallError, ClientClosedError, InvalidArgumentError, UnsupportedError,
                     error_for)

Secret = collections.namedtuple("Secret", "value version stale")
Secret.__doc__ = "A secret read: value (bytes), version (backend version, 0 if none), stale (bool)."

ReadInfo = collections.namedtuple("ReadInfo", "length version stale")
ReadInfo.__doc__ = "What read_into wrote: length (bytes in the buffer, a NUL follows), version, stale."

Change = collections.namedtuple("Change", "name kind version location")
Change.__doc__ = ("A change a plugin reported (ABI 1.1 notify): name, kind ('updated', 'deleted', "
                  "or the number of a kind this binding does not know: re-read it), version "
                  "(the new backend version, 0 if none), location (dict: the per-call location "
                  "it was seen under, {} for the client's own).")

PluginInfo = collections.namedtuple("PluginInfo", "name path version abi capabilities status error")
PluginInfo.__doc__ = ("One plugin file of a directory: status is 'OK' or why it cannot load "
                      "(then only name, path and error are meaningful).")

_LOG_LEVELS = {_lib.LOG_ERROR: logging.ERROR, _lib.LOG_WARN: logging.WARNING,
               _lib.LOG_INFO: logging.INFO, _lib.LOG_DEBUG: logging.DEBUG}

_CAP_NAMES = ((_lib.CAP_READ, "read"), (_lib.CAP_WRITE, "write"), (_lib.CAP_DELETE, "delete"),
              (_lib.CAP_REFRESH, "refresh"), (_lib.CAP_THREAD_SAFE, "thread-safe"),
              (_lib.CAP_LIST, "list"), (_lib.CAP_NOTIFY, "notify"))


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


def setting_str(value):
    """A setting or location value as the plugins read it: bool -> "true"/"false",
    numbers -> str; str and bytes unchanged."""
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _setting_text(key, value):
    return _c_text(setting_str(value), f"setting '{key}'")


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

    def has_slots(self, *slots):
        """True when the plugin's table has every named slot (kms_slot_available:
        inside struct_size and not NULL), e.g. has_slots("list_secrets")."""
        with self._lock:
            if not self._finalizer.alive:
                raise ClientClosedError(f"plugin module '{self.name}' was closed")
            table = self._lib.kms_module_plugin(self._handle)
            return all(self._lib.kms_slot_available(table, getattr(_lib.Plugin_, n).offset,
                                                    ctypes.sizeof(ctypes.c_void_p)) for n in slots)

    def client(self, settings=None, env=None, logger=None, on_change=None):
        """A new Client of this plugin (see Client)."""
        return Client(self, settings, env, logger, on_change)


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


_in_notify = threading.local()  # set while this thread runs an on_change callback


def _location_dict(settings, count):
    out = {}
    for i in range(count if settings else 0):
        key, value = settings[i].key, settings[i].value
        if key is not None:
            out[key.decode("utf-8", "replace")] = (value or b"").decode("utf-8", "replace")
    return out


class _HostServices:
    """The kms_host table a client hands its plugin: log into Python logging,
    getenv from a fixed mapping when one is given (else the process
    environment), and notify (ABI 1.1) into on_change when one is given.
    Lives as long as the client (the ABI requires it)."""

    def __init__(self, logger, env, on_change=None):
        if on_change is not None and not callable(on_change):
            raise InvalidArgumentError(f"on_change must be callable, not {type(on_change).__name__}")
        self.logger = logger
        self.on_change = on_change
        # NULL notify: the plugin notifies nobody (the ABI's rule for NULL).
        self.notify_fn = _lib.NOTIFY_FN(self._notify) if on_change else _lib.NOTIFY_FN()
        self.log_fn = _lib.LOG_FN(self._log)
        self.env = None
        self.getenv_fn = _lib.GETENV_FN()  # NULL: the plugin uses the process environment
        if env is not None:
            self.env = {_c_text(k, "environment name"): ctypes.create_string_buffer(
                _c_text(v, f"environment variable '{k}'")) for k, v in env.items()}
            self.getenv_fn = _lib.GETENV_FN(self._getenv)
        self.table = _lib.Host_(ctypes.sizeof(_lib.Host_), _lib.ABI_MAJOR, _lib.ABI_MINOR, None,
                                self.log_fn, self.getenv_fn, self.notify_fn)

    def _notify(self, _ctx, change_p):
        """kms_host.notify: runs on the plugin's thread (ctypes takes the GIL).
        Copies the borrowed kms_change into a Change, then calls on_change;
        an exception is logged, never raised into C."""
        try:
            c = change_p.contents
            size = c.struct_size  # plugin-written, size-prefixed: read only inside it

            def has(field, width):
                return size >= getattr(_lib.Change_, field).offset + width

            if not c.name or not has("name", ctypes.sizeof(ctypes.c_void_p)):
                return
            kind = c.kind if has("kind", 4) else 0
            change = Change(c.name.decode("utf-8", "replace"),
                            {_lib.CHANGE_UPDATED: "updated", _lib.CHANGE_DELETED: "deleted"}.get(kind, kind),
                            c.version if has("version", 8) else 0,
                            _location_dict(c.location, c.n_location) if has("n_location", 8) else {})
            _in_notify.active = True
            try:
                self.on_change(change)
            finally:
                _in_notify.active = False
        except Exception:  # pylint: disable=broad-except
            try:
                self.logger.exception("kmsplug: on_change callback failed")
            except Exception:  # pylint: disable=broad-except
                pass

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
    on_change: called with a Change when the plugin learns that a secret
    changed or disappeared (ABI 1.1 notify; plugins with the "notify"
    capability). It runs on the plugin's thread -- often its background
    refresher, or the thread whose read saw the change -- holding the GIL, so
    it must be thread-safe and quick (queue the work); it may call read/list/
    health on this client but never close() it (close would wait for the
    very thread that runs the callback: ClientClosedError is raised instead).
    Its exceptions are logged to `logger`, never raised into the plugin.
    The client keeps on_change alive until it is closed, so a callback that
    refers to its own client keeps it from being garbage-collected: close
    such a client explicitly (or use `with`).
    """

    def __init__(self, module, settings=None, env=None, logger=None, on_change=None):
        self.module = module
        lib = self._lib = module.library
        pairs = list(settings.items() if hasattr(settings, "items") else settings or ())
        keep = [(_c_text(k, "setting name"), _setting_text(k, v)) for k, v in pairs]
        arr = (_lib.Setting_ * max(1, len(keep)))(*[_lib.Setting_(k, v) for k, v in keep])
        self._host = _HostServices(logger or logging.getLogger(f"kmsplug.plugin.{module.name}"), env,
                                   on_change)
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
                if self._inflight == 0 and self._closed:  # only close() ever waits
                    self._cond.notify_all()

    def _need(self, feature, what):
        """Raise UNSUPPORTED when the loader lacks the ABI 1.1 calls `feature` needs
        (the plugin's own lack of a slot is reported by the loader, naming the slot)."""
        if self._lib.has_feature(feature):
            return
        raise UnsupportedError(
            f"{what} needs kmsplug ABI 1.1, but the loader {self._lib.path} offers ABI 1.0 only "
            f"(no {', '.join(_lib.ABI11_FEATURES[feature])}): use a libkmsloader from kmsplug "
            "1.1 or later (KMSPLUG_LIBRARY)")

    def _options(self, what, location=None, flags=0, version=None, delete_mode=0,
                 recovery_window_days=None):
        """A kms_call_options for the arguments, or None when they are all
        defaults (then the 1.0 call is used, so a 1.0 loader still works).
        Returns (options, keepalive): the strings must outlive the C call."""
        pairs = []
        if location:
            items = location.items() if hasattr(location, "items") else location
            for k, v in items:
                pairs.append((_c_text(k, "location key"), _c_text(setting_str(v), f"location '{k}'")))
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                    or not 0 <= version < 2 ** 63):
            raise InvalidArgumentError(f"version must be a whole number from 1 (0: the current "
                                       f"one), not {version!r}")
        if recovery_window_days is not None and (
                isinstance(recovery_window_days, bool) or not isinstance(recovery_window_days, int)
                or not 0 <= recovery_window_days < 2 ** 32):
            raise InvalidArgumentError(f"recovery_window_days must be a whole number of days "
                                       f"(0: the backend's default), not {recovery_window_days!r}")
        if not (pairs or flags or version or delete_mode or recovery_window_days):
            return None, None
        self._need("options", what)
        arr = (_lib.Setting_ * max(1, len(pairs)))(*[_lib.Setting_(k, v) for k, v in pairs])
        opts = _lib.CallOptions_(ctypes.sizeof(_lib.CallOptions_), flags,
                                 ctypes.cast(arr, ctypes.POINTER(_lib.Setting_)) if pairs else None,
                                 len(pairs), version or 0, delete_mode, recovery_window_days or 0)
        return opts, (arr, pairs)

    @staticmethod
    def _read_flags(bypass_cache, nonblocking):
        return ((_lib.CALL_BYPASS_CACHE if bypass_cache else 0)
                | (_lib.CALL_NONBLOCKING if nonblocking else 0))

    # -- operations ---------------------------------------------------------

    def read_secret(self, name, *, version=None, location=None, bypass_cache=False,
                    nonblocking=False):
        """Read `name` -> Secret(value bytes, version, stale). Raises a KmsError subclass.
        version: pin a backend version (0/None: the current one). location: a
        mapping of the plugin's location keys (Vault: namespace, mount,
        path_prefix, field; env: prefix) overriding the client's settings for
        this call. bypass_cache: ask the backend. nonblocking: answer from the
        cache at once or raise UnavailableError at once (a background fetch
        starts). Options other than the defaults need ABI 1.1 (loader and plugin)."""
        cname = _c_text(name, "secret name")
        opts, keep = self._options("per-call read options", location,
                                   self._read_flags(bypass_cache, nonblocking), version)
        lib = self._lib

        def op(handle):
            out = ctypes.POINTER(_lib.Secret_)()
            err = _lib.KmsError_()
            if opts is None:
                st = lib.kms_client_read(handle, cname, ctypes.byref(out), ctypes.byref(err))
            else:
                st = lib.kms_client_read_opt(handle, cname, ctypes.byref(opts), ctypes.byref(out),
                                             ctypes.byref(err))
            if st:
                _raise(st, err)
            try:
                s = out.contents
                value = ctypes.string_at(s.value, s.length)
                size = s.struct_size  # kms_secret is size-prefixed: read what the plugin wrote
                version_ = s.version if size >= _lib.Secret_.version.offset + 8 else 0
                flags = s.flags if size >= _lib.Secret_.flags.offset + 4 else 0
            finally:
                lib.kms_client_free_secret(handle, out)  # wipes the C copy
            return Secret(value, version_, bool(flags & _lib.KMS_SECRET_STALE))

        try:
            return self._run(op)
        finally:
            del keep

    def read(self, name, **options):
        """The value of `name` as bytes (options as read_secret)."""
        return self.read_secret(name, **options).value

    def read_text(self, name, encoding="utf-8", **options):
        """The value of `name` decoded (strict: undecodable bytes raise UnicodeDecodeError)."""
        return self.read_secret(name, **options).value.decode(encoding)

    def read_into(self, name, buffer, *, version=None, location=None, bypass_cache=False,
                  nonblocking=False):
        """Read `name` into `buffer` (a writable bytes-like object: bytearray,
        memoryview, mmap) without the plugin allocating: the cheapest read the
        ABI has (ABI 1.1 loader; a 1.0 plugin is served through a copy).
        Returns ReadInfo(length, version, stale): buffer[:length] is the value
        and a NUL follows it. A buffer too
        small raises BufferTooSmallError whose `needed` is the size that fits;
        the buffer then holds no part of the value. Wipe the buffer when done."""
        self._need("read_into", "read_into")
        cname = _c_text(name, "secret name")
        try:
            view = memoryview(buffer).cast("B")
        except TypeError:
            raise InvalidArgumentError(f"buffer must be a writable bytes-like object (bytearray), "
                                       f"not {type(buffer).__name__}") from None
        if view.readonly:
            raise InvalidArgumentError("buffer is read-only: pass a bytearray")
        size = len(view)
        cbuf = (ctypes.c_char * size).from_buffer(view) if size else None
        opts, keep = self._options("per-call read options", location,
                                   self._read_flags(bypass_cache, nonblocking), version)
        lib = self._lib

        def op(handle):
            info = _lib.SecretInfo_(ctypes.sizeof(_lib.SecretInfo_))
            err = _lib.KmsError_()
            st = lib.kms_client_read_into(handle, cname, ctypes.byref(opts) if opts else None,
                                          cbuf, size, ctypes.byref(info), ctypes.byref(err))
            if st == errors.BUFFER_TOO_SMALL:
                raise BufferTooSmallError(err.message.decode("utf-8", "replace"),
                                          err.backend_status, needed=info.length + 1)
            if st:
                _raise(st, err)
            return ReadInfo(info.length, info.version, bool(info.flags & _lib.KMS_SECRET_STALE))

        try:
            return self._run(op)
        finally:
            del keep  # cbuf and view go with this frame, releasing the caller's buffer

    def write(self, name, value, description=None, cas=None, *, location=None):
        """Create or replace `name` (value: str -> UTF-8, or bytes, NULs allowed).
        description: stored beside the secret if the plugin can. cas: write only
        if the current version equals this (0: only if absent), else ConflictError.
        location: as read_secret (ABI 1.1)."""
        cname = _c_text(name, "secret name")
        data = _c_bytes(value, "secret value")
        wopts = _lib.WriteOptions_(ctypes.sizeof(_lib.WriteOptions_),
                                   _c_text(description, "description") if description is not None else None,
                                   _lib.KMS_WRITE_CAS if cas is not None else 0, cas or 0)
        opts, keep = self._options("per-call write options", location)
        lib = self._lib

        def op(handle):
            err = _lib.KmsError_()
            if opts is None:
                st = lib.kms_client_write(handle, cname, data, len(data), ctypes.byref(wopts),
                                          ctypes.byref(err))
            else:
                st = lib.kms_client_write_opt(handle, cname, data, len(data), ctypes.byref(wopts),
                                              ctypes.byref(opts), ctypes.byref(err))
            if st:
                _raise(st, err)

        try:
            self._run(op)
        finally:
            del keep

    def delete(self, name, *, location=None, permanent=None, recovery_window_days=None):
        """Delete `name`; deleting a missing secret succeeds (the ABI's rule).
        permanent: None = the client's configured mode, True = every version
        destroyed, False = recoverable. recovery_window_days: for a
        recoverable delete on backends with a window (AWS: 7-30). location: as
        read_secret. Anything but the defaults needs ABI 1.1."""
        cname = _c_text(name, "secret name")
        mode = {None: _lib.DELETE_DEFAULT, True: _lib.DELETE_PERMANENT,
                False: _lib.DELETE_SOFT}.get(permanent, -1)
        if mode < 0:
            raise InvalidArgumentError(f"permanent must be True, False or None, not {permanent!r}")
        opts, keep = self._options("per-call delete options", location, delete_mode=mode,
                                   recovery_window_days=recovery_window_days)
        lib = self._lib

        def op(handle):
            err = _lib.KmsError_()
            if opts is None:
                st = lib.kms_client_delete(handle, cname, ctypes.byref(err))
            else:
                st = lib.kms_client_delete_opt(handle, cname, ctypes.byref(opts), ctypes.byref(err))
            if st:
                _raise(st, err)

        try:
            self._run(op)
        finally:
            del keep

    def refresh(self):
        """Revalidate credentials and re-read cached secrets now."""
        lib = self._lib

        def op(handle):
            err = _lib.KmsError_()
            st = lib.kms_client_refresh(handle, ctypes.byref(err))
            if st:
                _raise(st, err)

        self._run(op)

    def list(self, prefix="", *, location=None):
        """Sorted names under `prefix` ("" = all), as read() takes them (ABI 1.1;
        UnsupportedError when the plugin cannot list)."""
        self._need("list", "listing secrets")
        cprefix = _c_text(prefix, "prefix") if prefix else None
        opts, keep = self._options("per-call list options", location)
        lib = self._lib

        def op(handle):
            names = ctypes.POINTER(ctypes.c_char_p)()
            count = ctypes.c_size_t(0)
            err = _lib.KmsError_()
            st = lib.kms_client_list_names(handle, cprefix, ctypes.byref(opts) if opts else None,
                                           ctypes.byref(names), ctypes.byref(count), ctypes.byref(err))
            if st:
                _raise(st, err)
            try:
                return [names[i].decode("utf-8", "replace") for i in range(count.value)]
            finally:
                lib.kms_client_list_names_free(names, count.value)

        try:
            return self._run(op)
        finally:
            del keep

    def health(self):
        """Health and statistics as a dict (ABI 1.1; never contacts the backend):
        reachable / authenticated (True, False or None: unknown),
        token_ttl_seconds (None: no expiring credential), the counters
        cache_entries, hits, misses, negative_hits, stale_serves, fetches,
        logins, renewals, errors_by_status {status name: count} (non-zero
        only), last_error_status (name or None), last_error (text, never a
        secret), last_error_time (Unix seconds or None)."""
        self._need("health", "health and statistics")
        lib = self._lib

        def op(handle):
            h = _lib.Health_(ctypes.sizeof(_lib.Health_))
            err = _lib.KmsError_()
            st = lib.kms_client_health(handle, ctypes.byref(h), ctypes.byref(err))
            if st:
                _raise(st, err)
            return h

        h = self._run(op)
        tri = {1: True, 0: False}
        out = {"reachable": tri.get(h.reachable), "authenticated": tri.get(h.authenticated),
               "token_ttl_seconds": None if h.token_ttl_seconds < 0 else h.token_ttl_seconds}
        for key in ("cache_entries", "hits", "misses", "negative_hits", "stale_serves", "fetches",
                    "logins", "renewals"):
            out[key] = getattr(h, key)
        out["errors_by_status"] = {lib.status_name(i): n for i, n in enumerate(h.errors_by_status) if n}
        out["last_error_status"] = lib.status_name(h.last_error_status) if h.last_error_status else None
        out["last_error"] = h.last_error.decode("utf-8", "replace")
        out["last_error_time"] = h.last_error_time or None
        return out

    @property
    def supports_options(self):
        """True when both the loader and the plugin take per-call options
        (ABI 1.1 loader, plugin table with read/write/delete_secret_opt)."""
        return self._lib.has_feature("options") and self.module.has_slots(
            "read_secret_opt", "write_secret_opt", "delete_secret_opt")

    # -- lifetime -----------------------------------------------------------

    def close(self):
        """Wait for calls in flight, then destroy the instance. Idempotent.
        Not from inside on_change (the plugin's destroy waits for that thread)."""
        if getattr(_in_notify, "active", False):
            raise ClientClosedError("close() called from an on_change callback: destroy would wait "
                                    "for the thread running it; close from another thread")
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


def open_client(plugin, settings=None, *, plugin_dir=None, library=None, env=None, logger=None,
                on_change=None):
    """Load `plugin` and create a client that owns its module (closing the
    client unloads the plugin). The usual entry point: kmsplug.open(...)."""
    module = Module(plugin, plugin_dir, library)
    try:
        c = module.client(settings, env, logger, on_change)
    except BaseException:
        module.close()
        raise
    c._owned_module = module  # pylint: disable=protected-access
    return c
