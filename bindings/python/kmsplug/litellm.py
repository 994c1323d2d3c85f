"""kmsplug.litellm -- run kmsplug plugins as LiteLLM's custom secret manager.

LiteLLM's proxy loads `key_management_settings.custom_secret_manager:
file.Class` from `file.py` beside config.yaml, checks that the class
subclasses CustomSecretManager and creates it with no arguments. A one-line
file `from kmsplug.litellm import KmsplugSecretManager` is all it needs; see
docs/litellm.md.

Configuration, read when the first call needs the plugin (LiteLLM creates the
manager before it has applied all settings):
  plugin        key_management_settings.kmsplug_plugin, else $KMSPLUG_PLUGIN
  plugin dir    ...kmsplug_plugin_dir, else $KMSPLUG_PLUGIN_DIR, else the
                loader's rule ($KMS_PLUGIN_PATH, then the installed directory)
  library       ...kmsplug_library, else $KMSPLUG_LIBRARY (kmsplug._lib's rule)
  settings      $KMSPLUG_SETTINGS (a JSON object), then every non-LiteLLM key
                of key_management_settings that LiteLLM kept, plus access_mode
  threads       $KMSPLUG_THREADS worker threads for async calls (default 8)
The plugin reads its own variables (HCP_VAULT_*, VAULT_*) from the process
environment. LiteLLM's KeyManagementSettings drops keys it does not know, so
with such versions only the environment carries kmsplug_* keys; config.yaml
can set them under `environment_variables`.

Behaviour: async methods run the blocking C call in a worker thread, so the
event loop never waits on the backend. A read returns None only for
NOT_FOUND; every other failure is logged (status, backend status, reason)
and raised -- LiteLLM then logs it and falls back to the environment for
reads, and logs a warning for key storage. `optional_params` keys that are
not LiteLLM settings (a team's namespace / mount / path_prefix) become the
call's location (kms_call_options, ABI 1.1); a plugin without the 1.1 slots
gets no call at all: UnsupportedError names the keys and the plugin's ABI.
recovery_window_in_days goes to a 1.1 plugin's delete options (a plugin
that has no recovery window says so, is logged once, and the delete runs
with the plugin's configured mode); a 1.0 plugin has no such option.
async_health_check reads a probe secret (a fresh answer) and, when that
fails, logs what the plugin's health slot (1.1) knows.
"""

import asyncio
import concurrent.futures
import functools
import json
import logging
import os
import threading
import weakref

try:
    import litellm as _litellm
    from litellm.integrations.custom_secret_manager import CustomSecretManager
except ImportError as _e:  # pragma: no cover - exercised only without LiteLLM
    raise ImportError("kmsplug.litellm runs inside LiteLLM: install litellm (pip install "
                      "'litellm[proxy]') in the same environment as kmsplug") from _e

from . import client as _client
from .errors import (InvalidArgumentError, KmsError, NotFoundError, UnavailableError,
                     UnsupportedError)

log = logging.getLogger("kmsplug.litellm")

# KeyManagementSettings fields: host-level settings, never plugin settings and
# never per-call options. access_mode is one the plugins implement as well.
LITELLM_SETTINGS = frozenset({
    "hosted_keys", "store_virtual_keys", "prefix_for_stored_virtual_keys", "access_mode",
    "primary_secret_name", "description", "tags", "custom_secret_manager", "aws_region_name",
    "aws_role_name", "aws_session_name", "aws_external_id", "aws_profile_name",
    "aws_web_identity_token", "aws_sts_endpoint", "replica_regions"})
PASSED_TO_PLUGIN = frozenset({"access_mode"})
BRIDGE_KEYS = {"kmsplug_plugin": "KMSPLUG_PLUGIN", "kmsplug_plugin_dir": "KMSPLUG_PLUGIN_DIR",
               "kmsplug_library": "KMSPLUG_LIBRARY"}
HEALTH_PROBE_ENV = "KMSPLUG_HEALTH_PROBE"
DEFAULT_HEALTH_PROBE = "kmsplug-health-probe"


def _settings_dict(settings):
    """key_management_settings as a dict, unknown keys included when LiteLLM kept them."""
    if settings is None:
        return {}
    if isinstance(settings, dict):
        return dict(settings)
    out = dict(settings.model_dump()) if hasattr(settings, "model_dump") else dict(vars(settings))
    out.update(getattr(settings, "model_extra", None) or {})
    return out


def _setting_value(key, value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)  # structured settings travel as JSON text
    if isinstance(value, (str, bool, int, float)):
        return value
    raise InvalidArgumentError(f"kmsplug: setting '{key}' has type {type(value).__name__}; "
                               "use a string, number, boolean, list or mapping")


def _seconds(timeout):
    """LiteLLM's timeout (float or httpx.Timeout) as seconds, or None."""
    if timeout is None or isinstance(timeout, (int, float)):
        return timeout
    return getattr(timeout, "read", None)


class _Config:
    """Where the plugin comes from and what it is given (see the module docstring)."""

    def __init__(self, settings, environ):
        self.plugin = settings.get("kmsplug_plugin") or environ.get("KMSPLUG_PLUGIN")
        self.plugin_dir = settings.get("kmsplug_plugin_dir") or environ.get("KMSPLUG_PLUGIN_DIR")
        self.library = settings.get("kmsplug_library") or environ.get("KMSPLUG_LIBRARY")
        if not self.plugin:
            raise InvalidArgumentError(
                "kmsplug: no plugin chosen: set KMSPLUG_PLUGIN (e.g. hashicorp_vault) in the "
                "environment or under environment_variables in config.yaml")
        self.settings = self._from_env(environ.get("KMSPLUG_SETTINGS"))
        for key, value in settings.items():
            if value is None or key in BRIDGE_KEYS:
                continue
            if key in PASSED_TO_PLUGIN or key not in LITELLM_SETTINGS:
                self.settings[key] = _setting_value(key, value)

    @staticmethod
    def _from_env(text):
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as e:
            raise InvalidArgumentError(f"kmsplug: KMSPLUG_SETTINGS is not JSON ({e}); write a JSON "
                                       'object such as {"delete_mode": "destroy"}') from None
        if not isinstance(value, dict):
            raise InvalidArgumentError("kmsplug: KMSPLUG_SETTINGS must be a JSON object "
                                       '(e.g. {"delete_mode": "destroy"})')
        return {k: _setting_value(k, v) for k, v in value.items() if v is not None}


def _after_fork(ref):
    manager = ref()
    if manager is not None:
        manager._forget_parent_state()  # pylint: disable=protected-access


class KmsplugSecretManager(CustomSecretManager):
    """LiteLLM custom secret manager backed by a kmsplug plugin. Thread-safe;
    one plugin client per manager (per process), created at the first call."""

    def __init__(self):
        super().__init__(secret_manager_name="kmsplug")
        # Two locks: the event loop takes _pool_lock (to submit work) and must
        # never wait behind _client_lock, held by a worker during a slow create.
        self._client_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._client = None
        self._config = None
        self._pool = None
        self._warned_tags = False
        self._no_window = False  # the plugin said it has no recovery window
        # A forked worker must not use the parent's plugin instance (its
        # connections and threads) nor its worker pool: it makes its own.
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    def _forget_parent_state(self):
        self._client_lock = threading.Lock()  # the parent's locks may have been held at fork
        self._pool_lock = threading.Lock()
        c, self._client, self._pool = self._client, None, None
        if c is not None:
            c.abandon()

    # -- setup --------------------------------------------------------------

    def client(self):
        """The plugin client, created on first use from LiteLLM's settings and the environment."""
        with self._client_lock:
            if self._client is None:
                cfg = _Config(_settings_dict(_litellm._key_management_settings), os.environ)
                self._client = _client.open_client(cfg.plugin, cfg.settings, plugin_dir=cfg.plugin_dir,
                                                   library=cfg.library)
                self._config = cfg
                log.info("kmsplug: plugin %s %s loaded from %s", self._client.module.name,
                         self._client.module.version, self._client.module.path)
            return self._client

    def _executor(self):
        with self._pool_lock:
            if self._pool is None:
                text = os.environ.get("KMSPLUG_THREADS", "8")
                workers = int(text) if text.isdigit() else 0
                if not 1 <= workers <= 256:
                    raise InvalidArgumentError(f"kmsplug: KMSPLUG_THREADS={text!r}: use a whole "
                                               "number of worker threads from 1 to 256")
                self._pool = concurrent.futures.ThreadPoolExecutor(workers, "kmsplug")
            return self._pool

    def close(self):
        """Destroy the plugin client and stop the worker threads."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        with self._client_lock:
            c, self._client = self._client, None
        if c is not None:
            c.close()

    def _location(self, c, optional_params):
        """The call's location: optional_params keys that are not LiteLLM
        settings, not bridge keys and not simply this client's own settings
        (a team's secret_manager_settings). UnsupportedError, before any
        backend call, when the plugin cannot take per-call options: a team's
        key must never land in the default location."""
        own = self._config.settings if self._config else {}
        loc = {k: _setting_value(k, v) for k, v in (optional_params or {}).items()
               if v is not None and k not in LITELLM_SETTINGS and k not in BRIDGE_KEYS
               and own.get(k, object()) != _setting_value(k, v)}
        if loc and not c.supports_options:
            m = c.module
            raise UnsupportedError(
                f"kmsplug: team location overrides ({', '.join(sorted(loc))}) need per-call "
                f"options (kmsplug ABI 1.1); plugin '{m.name}' {m.version} (ABI {m.abi[0]}."
                f"{m.abi[1]}) does not offer them: update the plugin, or remove these keys from "
                "the team's secret_manager_settings")
        return {k: _client.setting_str(v) for k, v in loc.items()}

    # -- calls --------------------------------------------------------------

    def _call(self, what, name, fn):
        """fn(client), every failure logged once with its status (a read's
        NOT_FOUND never gets here: it is the None answer)."""
        try:
            return fn(self.client())
        except KmsError as e:
            log.error("kmsplug: %s %r failed: %s (backend status %d): %s", what, name, e.status_name,
                      e.backend_status, e.message)
            raise

    async def _in_thread(self, what, name, fn, timeout):
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor(), self._call, what, name, fn)
        limit = _seconds(timeout)
        if limit is None:
            return await fut
        try:
            return await asyncio.wait_for(fut, limit)
        except asyncio.TimeoutError:
            e = UnavailableError(f"kmsplug: {what} {name!r} had no answer within {limit} s "
                                 "(the plugin call finishes in its worker thread)")
            log.error("%s", e)
            raise e from None

    def _read(self, secret_name, optional_params):
        def fn(c):
            try:
                value = c.read(secret_name, location=self._location(c, optional_params))
            except NotFoundError:
                log.debug("kmsplug: %r not found", secret_name)
                return None
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidArgumentError("kmsplug: the stored value is not UTF-8 text, "
                                           "which LiteLLM needs") from None
        return fn

    async def async_read_secret(self, secret_name, optional_params=None, timeout=None):
        """The secret as str, or None when the plugin says NOT_FOUND."""
        return await self._in_thread("read", secret_name, self._read(secret_name, optional_params),
                                     timeout)

    def sync_read_secret(self, secret_name, optional_params=None, timeout=None):
        """As async_read_secret, in the calling thread (in a worker when a timeout is given)."""
        fn = self._read(secret_name, optional_params)
        limit = _seconds(timeout)
        if limit is None:
            return self._call("read", secret_name, fn)
        fut = self._executor().submit(self._call, "read", secret_name, fn)
        try:
            return fut.result(limit)
        except concurrent.futures.TimeoutError:
            e = UnavailableError(f"kmsplug: read {secret_name!r} had no answer within {limit} s")
            log.error("%s", e)
            raise e from None

    async def async_write_secret(self, secret_name, secret_value, description=None,
                                 optional_params=None, timeout=None, tags=None):
        """Create or replace; {"status": "success", ...} or a raised KmsError."""
        if tags and not self._warned_tags:
            self._warned_tags = True
            log.warning("kmsplug: tags are not stored: the plugin ABI write has a "
                        "description but no tags")

        def fn(c):
            c.write(secret_name, secret_value, description=description,
                    location=self._location(c, optional_params))
            return {"status": "success", "secret_name": secret_name, "plugin": c.module.name,
                    "message": f"Secret {secret_name} written"}

        return await self._in_thread("write", secret_name, fn, timeout)

    async def async_update_secret_value(self, secret_name, secret_value, optional_params=None,
                                        timeout=None):
        """Replace the value of `secret_name` (what a same-name rotation does)."""
        return await self.async_write_secret(secret_name, secret_value, optional_params=optional_params,
                                             timeout=timeout)

    async def async_delete_secret(self, secret_name, recovery_window_in_days=7,
                                  optional_params=None, timeout=None):
        """Delete (a missing secret is success), in the team's location when
        optional_params carries one. The plugin's own setting decides how
        (hashicorp_vault's delete_mode). recovery_window_in_days reaches a 1.1
        plugin's delete options; see _delete for plugins without a window."""
        def fn(c):
            self._delete(c, secret_name, recovery_window_in_days,
                         self._location(c, optional_params))
            return {"status": "success", "secret_name": secret_name, "plugin": c.module.name,
                    "message": f"Secret {secret_name} deleted"}

        return await self._in_thread("delete", secret_name, fn, timeout)

    def _delete(self, c, name, window, location):
        """Delete with the recovery window when the plugin has 1.1 delete
        options. LiteLLM always sends one (default 7, AWS's minimum); a plugin
        whose backend has no window (Vault) answers UNSUPPORTED naming
        recovery_window_days before touching anything: that is logged once,
        remembered, and the delete runs without it. A 1.0 plugin has no window
        option."""
        if not self._no_window and isinstance(window, int) and not isinstance(window, bool) \
                and window > 0 and c.module.has_slots("delete_secret_opt"):
            try:
                c.delete(name, location=location, recovery_window_days=window)
                return
            except UnsupportedError as e:
                if "recovery_window_days" not in e.message:
                    raise
                if not self._no_window:
                    self._no_window = True
                    log.warning("kmsplug: plugin %s has no recovery window (%s); deletes use its "
                                "configured delete mode", c.module.name, e.message)
        c.delete(name, location=location)

    async def async_rotate_secret(self, current_secret_name, new_secret_name, new_secret_value,
                                  optional_params=None, timeout=None):
        """LiteLLM's rotation: the current secret must exist (else ValueError);
        same name -> update the value; new name -> write it, read it back,
        then delete the old one. Returns the write's result."""
        if await self.async_read_secret(current_secret_name, optional_params, timeout) is None:
            raise ValueError(f"Current secret {current_secret_name} not found")
        if current_secret_name == new_secret_name:
            return await self.async_update_secret_value(current_secret_name, new_secret_value,
                                                        optional_params, timeout)
        created = await self.async_write_secret(new_secret_name, new_secret_value,
                                                description=f"Rotated from {current_secret_name}",
                                                optional_params=optional_params, timeout=timeout)
        if await self.async_read_secret(new_secret_name, optional_params, timeout) is None:
            raise ValueError(f"Failed to verify new secret {new_secret_name}")
        await self.async_delete_secret(current_secret_name, 7, optional_params, timeout)
        return created

    def validate_environment(self):
        """Load the plugin and create its client now: True, or a ValueError /
        KmsError saying what is missing (e.g. KMSPLUG_PLUGIN, HCP_VAULT_TOKEN)."""
        self.client()
        return True

    async def async_health_check(self, timeout=None):
        """True when the backend answers now: a read of $KMSPLUG_HEALTH_PROBE
        (default 'kmsplug-health-probe') is OK or NOT_FOUND. The plugin's
        health slot (ABI 1.1) never contacts the backend, so it only reports
        the last observation: deciding by it would keep answering False after
        the backend recovered (nothing else may read meanwhile) and True after
        it failed. It explains a failure instead: the warning carries what the
        plugin knows (reachable, authenticated, token time left, last error).
        Failures give False, never an exception."""
        probe = os.environ.get(HEALTH_PROBE_ENV, DEFAULT_HEALTH_PROBE)

        def fn(c):
            try:
                self._read(probe, None)(c)  # None (NOT_FOUND) is an answer too: healthy
                return True
            except KmsError as e:
                log.warning("kmsplug: health check failed: %s%s", e, _health_detail(c))
                return False

        try:
            return await self._in_thread("health check", probe, fn, timeout)
        except (KmsError, OSError) as e:  # OSError: LibraryError, no libkmsloader
            log.warning("kmsplug: health check failed: %s", e)
            return False


def _health_detail(c):
    """'; plugin health: ...' from the plugin's health slot, or '' without one."""
    if not (c.module.has_slots("health") and c.module.library.has_feature("health")):
        return ""
    try:
        h = c.health()
    except KmsError as e:
        return f"; plugin health unavailable: {e}"
    last = f", last error {h['last_error_status']}: {h['last_error']}" if h["last_error_status"] else ""
    return (f"; plugin {c.module.name} health: reachable={h['reachable']} "
            f"authenticated={h['authenticated']} token_ttl_seconds={h['token_ttl_seconds']}{last}")
