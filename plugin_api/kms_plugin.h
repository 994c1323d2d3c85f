/*
 * kms_plugin.h -- the kmsplug plugin ABI (what a key-management plugin exports).
 *
 * A plugin is a shared object named <name>.so that exports exactly one symbol,
 * kms_plugin_entry. The host calls it with its own ABI version and gets back a
 * pointer to a static, immutable function table (struct kms_plugin). Everything
 * else is reached through that table.
 *
 * Compatibility rules (the promise this header makes):
 *   - KMS_ABI_MAJOR changes only when compatibility breaks. A host refuses a
 *     plugin of another major, and a plugin may refuse a host of another major.
 *   - KMS_ABI_MINOR grows when fields, enum values or flags are APPENDED.
 *     Nothing is ever reordered, renamed or removed within a major.
 *   - Every extensible struct starts with struct_size, the sizeof() the writer
 *     of the struct was compiled with. A reader only touches a field that lies
 *     entirely inside struct_size (like sqlite3_vfs.iVersion, but by size so
 *     that no version table is needed). The loader's kms_slot_available() is
 *     the one place that decides whether a kms_plugin slot may be called.
 *
 * This header is pure C99 and depends only on <stddef.h> and <stdint.h>.
 * Every name it declares is prefixed kms_ / KMS_. "Added in" notes give the
 * ABI minor that introduced a name; names without one are 1.0. ABI 1.1 adds
 * per-call options, a read into a caller-supplied buffer, listing, change
 * notifications and health (all appended; see docs/design.md "ABI 1.1").
 */
#ifndef KMS_PLUGIN_H
#define KMS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ABI version implemented by this header. Added in 1.0. */
#define KMS_ABI_MAJOR 1
#define KMS_ABI_MINOR 1

/* The name of the single symbol a plugin exports. Added in 1.0. */
#define KMS_PLUGIN_ENTRY_SYMBOL "kms_plugin_entry"

/* Marks the entry point as exported when the plugin is built with
 * -fvisibility=hidden (which it should be, so that nothing else leaks). */
#if defined(__GNUC__) || defined(__clang__)
#define KMS_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define KMS_PLUGIN_EXPORT
#endif

/*
 * Status of every call. Numbers are fixed forever; new values are only
 * appended, so a host must treat an unknown value like KMS_INTERNAL.
 * kms_status_str() (kms_plugin_util.h) names each one. Added in 1.0.
 */
typedef enum kms_status {
  KMS_OK = 0,
  KMS_NOT_FOUND = 1,         /* no such secret (or it was deleted) */
  KMS_INVALID_ARGUMENT = 2,  /* bad name, setting or value: fix the input */
  KMS_PERMISSION_DENIED = 3, /* authenticated, but not allowed (policy, access_mode) */
  KMS_UNAUTHENTICATED = 4,   /* credentials missing, invalid or expired */
  KMS_UNAVAILABLE = 5,       /* backend unreachable, sealed, timing out: retry later */
  KMS_CONFLICT = 6,          /* check-and-set version did not match */
  KMS_UNSUPPORTED = 7,       /* the plugin (or this ABI slot) cannot do that */
  KMS_NO_MEMORY = 8,
  KMS_INTERNAL = 9,          /* a bug or an unexpected backend answer */
  /* Added in 1.1: read_secret_into's buffer cannot hold the value; the
   * kms_secret_info it was given says how many bytes are needed. Only that
   * slot returns it, so a 1.0 host never meets it. */
  KMS_BUFFER_TOO_SMALL = 10
} kms_status;

/* Size of kms_error.message, including the terminating NUL. */
#define KMS_ERROR_MESSAGE_SIZE 256

/*
 * Error details, owned by the caller and filled by the callee. The layout is
 * frozen for major 1 (it is caller-allocated, so it cannot grow).
 *   status          the same value the call returned.
 *   backend_status  the backend's own code (an HTTP status for Vault), or 0.
 *   message         NUL-terminated, says what failed and what to do about it.
 *                   It never contains a secret value or a credential.
 * Added in 1.0.
 */
typedef struct kms_error {
  kms_status status;
  int32_t backend_status;
  char message[KMS_ERROR_MESSAGE_SIZE];
} kms_error;

/* Log levels passed to kms_host.log. Added in 1.0. */
typedef enum kms_log_level {
  KMS_LOG_ERROR = 0,
  KMS_LOG_WARN = 1,
  KMS_LOG_INFO = 2,
  KMS_LOG_DEBUG = 3
} kms_log_level;

/* kms_change.kind. Added in 1.1. */
#define KMS_CHANGE_UPDATED 1u /* a new version exists (version says which) */
#define KMS_CHANGE_DELETED 2u /* the secret is gone from the backend */

/*
 * What host->notify reports. Size-prefixed, written by the plugin (the host
 * reads a field only inside struct_size).
 *   name        the secret's name as the host uses it in read_secret.
 *   kind        KMS_CHANGE_*; a host treats an unknown kind as "re-read it".
 *   version     the backend's new version for UPDATED (0 if it has none).
 *   location    the location override (kms_call_options) under which the
 *               change was seen, or NULL/0 for the instance's own location,
 *               so a host with per-team locations knows which secret it is.
 * A plugin notifies changes it learns from the backend (a refresh, a read,
 * a background fetch) and that it did not make itself through this instance:
 * the caller of a write or delete already knows. Never a secret value.
 * Added in 1.1.
 */
typedef struct kms_change {
  size_t struct_size;
  const char *name;
  uint32_t kind;
  int64_t version;
  const struct kms_setting *location;
  size_t n_location;
} kms_change;

/*
 * Services the host offers a plugin instance. Size-prefixed: a plugin reads a
 * field only if it lies inside struct_size. Any function pointer may be NULL.
 * The table and everything it points to must stay valid until destroy()
 * of every instance created with it has returned.
 *
 *   ctx     opaque, passed back to every callback.
 *   log     called from any thread at any time while the instance lives, so it
 *           must be thread-safe. The message is borrowed for the call only and
 *           never contains secret values or credentials. NULL: the plugin is
 *           silent.
 *   getenv  lets a host supply its own environment (tests, sandboxes,
 *           per-tenant settings). Most plugins call it only from create();
 *           a plugin whose secrets live in the environment (env) calls it
 *           from read_secret too, so it must be thread-safe. The returned
 *           string is borrowed until the plugin call that asked returns; the
 *           plugin copies what it keeps. Returns NULL when unset.
 *           NULL pointer: the plugin uses the process environment.
 * Added in 1.0.
 */
typedef struct kms_host {
  size_t struct_size;
  uint32_t abi_major; /* the host's KMS_ABI_MAJOR */
  uint32_t abi_minor; /* the host's KMS_ABI_MINOR */
  void *ctx;
  void (*log)(void *ctx, kms_log_level level, const char *message);
  const char *(*getenv)(void *ctx, const char *name);
  /* Added in 1.1: a change the plugin learned (see kms_change). Called from
   * any thread (often the plugin's background refresher), never while the
   * plugin holds one of its own locks, so it may call read/list/health on
   * the same instance -- but never destroy() (destroy waits for the thread
   * that is calling). Must be thread-safe and should return quickly (queue
   * the work). `change` and every pointer in it are borrowed for the call.
   * NULL, or outside struct_size (a 1.0 host): the plugin notifies nobody. */
  void (*notify)(void *ctx, const struct kms_change *change);
} kms_host;

/* One key/value pair from the gateway's key_management_settings. Both strings
 * are borrowed for the duration of create(). Layout frozen. Added in 1.0. */
typedef struct kms_setting {
  const char *key;
  const char *value;
} kms_setting;

/* kms_call_options.flags. Bits not listed are refused (INVALID_ARGUMENT).
 * Added in 1.1. */
/* read: never block. Answer from the cache at once -- a fresh value, or one
 * past its TTL flagged KMS_SECRET_STALE -- or, on a miss, return
 * KMS_UNAVAILABLE at once and start a background fetch (at most one per
 * name) whose result later reads find; the plugin notifies KMS_CHANGE_UPDATED
 * when it lands if the host has notify. For event-loop hosts. */
#define KMS_CALL_NONBLOCKING 0x1u
/* read: skip the cache and ask the backend; the answer refreshes the cache.
 * Not together with KMS_CALL_NONBLOCKING. */
#define KMS_CALL_BYPASS_CACHE 0x2u

/* kms_call_options.delete_mode. Added in 1.1. */
#define KMS_DELETE_DEFAULT 0u   /* what the instance is configured to do */
#define KMS_DELETE_SOFT 1u      /* recoverable (Vault KV v2: DELETE on data/) */
#define KMS_DELETE_PERMANENT 2u /* every version destroyed (Vault: metadata/) */

/*
 * Per-call options of read_secret_opt, read_secret_into, write_secret_opt,
 * delete_secret_opt and list_secrets. Size-prefixed (struct_size as the host
 * compiled it); NULL or all fields zero means defaults, which is exactly what
 * the 1.0 slots do.
 *   flags          KMS_CALL_* bits (read only; 0 for the other calls).
 *   location       key/value pairs naming WHERE the secret lives, overriding
 *                  the instance's configuration for this call; each plugin
 *                  documents its keys (Vault: namespace, mount, path_prefix,
 *                  field). Borrowed for the call. NULL when n_location is 0.
 *   version        read: pin this backend version (KV v2 ?version=); 0 =
 *                  the current one. 0 for the other calls.
 *   delete_mode    delete: KMS_DELETE_*. 0 for the other calls.
 *   recovery_window_days
 *                  delete, soft: how long the backend keeps it recoverable,
 *                  for backends that have such a window (AWS: 7-30); 0 = the
 *                  backend's default.
 * Plugin obligations: an unknown location key, an unknown flag bit or a field
 * that does not apply to the call is KMS_INVALID_ARGUMENT naming it (never
 * silently ignored: a write meant for a team's namespace must not land in the
 * default one); a known option the backend cannot honour (a version pin on a
 * store without versions) is KMS_UNSUPPORTED naming it. Location values are
 * validated like the settings they override.
 * Added in 1.1.
 */
typedef struct kms_call_options {
  size_t struct_size;
  uint32_t flags;
  const kms_setting *location;
  size_t n_location;
  int64_t version;
  uint32_t delete_mode;
  uint32_t recovery_window_days;
} kms_call_options;

/* kms_secret.flags. Added in 1.0. */
#define KMS_SECRET_STALE 0x1u /* served from cache after a backend failure */

/*
 * A secret returned by read_secret. Allocated by the plugin, released only by
 * free_secret (which wipes the bytes). Size-prefixed: the host reads a field
 * only if it lies inside struct_size (see KMS_SECRET_HAS in kms_plugin_util.h).
 *   value    the bytes, followed by a NUL that is not counted in length (so a
 *            text secret can be used as a C string; binary values may contain
 *            NULs, use length).
 *   version  the backend's version of the value (KV v2 version), 0 if none.
 *   flags    KMS_SECRET_* bits.
 * Added in 1.0.
 */
typedef struct kms_secret {
  size_t struct_size;
  const char *value;
  size_t length;
  int64_t version;
  uint32_t flags;
} kms_secret;

/*
 * What read_secret_into reports besides the bytes. Caller-allocated and
 * size-prefixed: the caller sets struct_size to its sizeof, the plugin writes
 * only fields inside it.
 *   length   bytes of the value (without the NUL). With KMS_BUFFER_TOO_SMALL:
 *            the length the value has, so a buffer of length + 1 fits.
 *   version, flags   as in kms_secret.
 * Added in 1.1.
 */
typedef struct kms_secret_info {
  size_t struct_size;
  size_t length;
  int64_t version;
  uint32_t flags;
} kms_secret_info;

/* kms_write_options.flags. Added in 1.0. */
#define KMS_WRITE_CAS 0x1u /* honour cas_version (check-and-set) */

/*
 * Optional arguments of write_secret. Size-prefixed; NULL means defaults.
 *   description  human text stored next to the secret (Vault: inside the KV data next to `key`, as LiteLLM writes it),
 *                or NULL.
 *   flags        KMS_WRITE_* bits.
 *   cas_version  with KMS_WRITE_CAS: the write lands only if the current
 *                version equals this (0 = only if the secret does not exist);
 *                otherwise KMS_CONFLICT.
 * Added in 1.0.
 */
typedef struct kms_write_options {
  size_t struct_size;
  const char *description;
  uint32_t flags;
  uint64_t cas_version;
} kms_write_options;

/* kms_plugin.capabilities bits. Added in 1.0. */
#define KMS_CAP_READ 0x1u
#define KMS_CAP_WRITE 0x2u
#define KMS_CAP_DELETE 0x4u
#define KMS_CAP_REFRESH 0x8u
#define KMS_CAP_THREAD_SAFE 0x10u /* calls on one instance may run concurrently */
/* Added in 1.1 (informational, like every capability: the slots decide). */
#define KMS_CAP_LIST 0x20u   /* list_secrets works */
#define KMS_CAP_NOTIFY 0x40u /* the plugin calls host->notify when it learns a change */

/* Number of kms_health.errors_by_status counters. Added in 1.1. */
#define KMS_HEALTH_STATUS_SLOTS 16

/*
 * Health and statistics of an instance, filled by the health slot.
 * Caller-allocated and size-prefixed: the caller sets struct_size and presets
 * the "unknown" values (kms_client_health does both); the plugin writes only
 * fields inside struct_size and leaves what it does not track alone.
 *   reachable, authenticated   1 yes, 0 no, -1 unknown / not applicable, as
 *                   last observed (health never contacts the backend).
 *   token_ttl_seconds   seconds the current credential has left; -1 when it
 *                   does not expire or there is none.
 *   cache_entries   secrets held in the cache now.
 *   hits, misses    cached reads answered / not answered from the cache.
 *   negative_hits   reads answered NOT_FOUND from a cached "not found".
 *   stale_serves    reads answered with a KMS_SECRET_STALE value.
 *   fetches         backend reads of a secret; logins, renewals: of credentials.
 *   errors_by_status  calls that failed, indexed by kms_status (values at or
 *                   past KMS_HEALTH_STATUS_SLOTS counted at KMS_INTERNAL).
 *   last_error_status, last_error   the latest failure (a kms_error message:
 *                   no secret, no credential), KMS_OK and "" when none.
 *   last_error_time  its time in seconds since the Unix epoch, 0 when none.
 * Every counter counts since create(). Added in 1.1.
 */
typedef struct kms_health {
  size_t struct_size;
  int32_t reachable;
  int32_t authenticated;
  int64_t token_ttl_seconds;
  uint64_t cache_entries;
  uint64_t hits;
  uint64_t misses;
  uint64_t negative_hits;
  uint64_t stale_serves;
  uint64_t fetches;
  uint64_t logins;
  uint64_t renewals;
  uint64_t errors_by_status[KMS_HEALTH_STATUS_SLOTS];
  kms_status last_error_status;
  int64_t last_error_time;
  char last_error[KMS_ERROR_MESSAGE_SIZE];
} kms_health;

/* Called by list_secrets once per name, with the name borrowed for the call.
 * Return 0 to go on, anything else to stop (list_secrets then returns
 * KMS_OK). Added in 1.1. */
typedef int (*kms_list_fn)(void *ctx, const char *name);

/* An instance of a plugin, opaque to the host. */
typedef struct kms_instance kms_instance;

/*
 * The function table a plugin exports. Static and immutable: the host never
 * writes to it and may read it from any thread.
 *
 * Threading: create() and destroy() never run concurrently with anything else
 * on the same instance. If capabilities has KMS_CAP_THREAD_SAFE, every other
 * slot may be called concurrently from many threads on one instance;
 * otherwise the host serialises calls per instance. Different instances are
 * always independent. A plugin never calls back into the host (log) while
 * holding its own locks, and destroy() stops every thread the plugin started
 * before returning.
 *
 * Arguments: every pointer argument is borrowed for the duration of the call.
 * `err` is never NULL when the call comes through the loader; a plugin fills
 * it whenever it returns something other than KMS_OK. Names are UTF-8,
 * NUL-terminated; each plugin documents and enforces which names it accepts.
 *
 * Slots after `destroy` may be absent (outside struct_size) or NULL; a host
 * must check with kms_slot_available() before calling one.
 */
typedef struct kms_plugin {
  size_t struct_size; /* sizeof(struct kms_plugin) as the plugin was built */
  uint32_t abi_major; /* KMS_ABI_MAJOR the plugin was built with */
  uint32_t abi_minor; /* KMS_ABI_MINOR the plugin was built with */
  const char *name;   /* equals the config name and the file's base name */
  const char *version; /* the plugin's own release, e.g. "1.2.0" */
  uint64_t capabilities; /* KMS_CAP_* bits */

  /* Create an instance from settings (key_management_settings as strings).
   * Reads configuration (environment through host->getenv), validates it and
   * fails with KMS_INVALID_ARGUMENT naming the bad setting and the fix.
   * On success *out is set and must later be passed to destroy(). */
  kms_status (*create)(const kms_host *host, const kms_setting *settings, size_t n_settings,
                       kms_instance **out, kms_error *err);

  /* Release an instance: stops its threads, wipes cached secrets and
   * credentials, frees everything. NULL is a no-op. Secrets returned earlier
   * stay valid until their own free_secret. */
  void (*destroy)(kms_instance *instance);

  /* Read the current value of `name`. On KMS_OK *out is a new secret that
   * the host releases with free_secret. On error *out is NULL. */
  kms_status (*read_secret)(kms_instance *instance, const char *name, kms_secret **out,
                            kms_error *err);

  /* Create or replace `name` with `length` bytes at `value`. Returns only
   * when the write has landed (KMS_OK) or has definitely failed. `options`
   * may be NULL. */
  kms_status (*write_secret)(kms_instance *instance, const char *name, const char *value,
                             size_t length, const kms_write_options *options, kms_error *err);

  /* Delete `name`. Deleting a secret that does not exist is KMS_OK (the goal,
   * "it is gone", is met), so hooks can be replayed safely. */
  kms_status (*delete_secret)(kms_instance *instance, const char *name, kms_error *err);

  /* Revalidate credentials and re-read every cached secret now (what the
   * refresh interval does on a timer). */
  kms_status (*refresh)(kms_instance *instance, kms_error *err);

  /* Wipe and free a secret returned by read_secret. NULL is a no-op. May be
   * called from any thread, also after the instance was destroyed (but not
   * after the plugin was unloaded). */
  void (*free_secret)(kms_secret *secret);

  /* ---- Added in 1.1. Each slot may be absent; kms_client_* falls back to
   * the 1.0 slots when the options are defaults. ---- */

  /* read_secret with options (location, version pin, NONBLOCKING,
   * BYPASS_CACHE). `options` may be NULL. Otherwise as read_secret. */
  kms_status (*read_secret_opt)(kms_instance *instance, const char *name,
                                const kms_call_options *options, kms_secret **out,
                                kms_error *err);

  /* write_secret with options (location). Both option pointers may be
   * NULL. */
  kms_status (*write_secret_opt)(kms_instance *instance, const char *name, const char *value,
                                 size_t length, const kms_write_options *write_options,
                                 const kms_call_options *options, kms_error *err);

  /* delete_secret with options (location, delete_mode, recovery window).
   * A missing secret is still KMS_OK. `options` may be NULL. */
  kms_status (*delete_secret_opt)(kms_instance *instance, const char *name,
                                  const kms_call_options *options, kms_error *err);

  /* Read into the caller's buffer: on KMS_OK buf holds the value's bytes and
   * a NUL (info->length bytes, not counting the NUL) and info says version
   * and flags. If `size` < length + 1: KMS_BUFFER_TOO_SMALL, info->length set
   * to the value's length, and buf holds no part of the value. A cached read
   * allocates nothing and takes no lock a reader of another name contends on
   * long -- that is the point of this slot (the cheapest read the ABI has).
   * `options` as read_secret_opt; `info` is never NULL through the loader.
   * The caller wipes buf when done. */
  kms_status (*read_secret_into)(kms_instance *instance, const char *name,
                                 const kms_call_options *options, char *buf, size_t size,
                                 kms_secret_info *info, kms_error *err);

  /* Call fn(ctx, name) for every secret whose name starts with `prefix`
   * ("" = all), in no promised order, each name once, as the host would pass
   * it to read_secret (within the location of `options`). The plugin pages
   * through the backend itself. fn is host code: never called under the
   * plugin's locks. On an error after some names were delivered the status
   * says so; the names delivered stay true. */
  kms_status (*list_secrets)(kms_instance *instance, const char *prefix,
                             const kms_call_options *options, kms_list_fn fn, void *ctx,
                             kms_error *err);

  /* Fill `out` (see kms_health) from what the instance knows now. Never
   * contacts the backend and never blocks on it, so a host may poll it. */
  kms_status (*health)(kms_instance *instance, kms_health *out, kms_error *err);

  /* New slots are appended here, each with an "Added in 1.N" note. */
} kms_plugin;

/*
 * The one symbol a plugin exports. The host passes its own ABI version; the
 * plugin returns its table, or NULL to refuse a host it cannot serve (for
 * example another major). Must be cheap, thread-safe and free of side
 * effects: the loader calls it merely to list plugins. Added in 1.0.
 */
typedef const kms_plugin *(*kms_plugin_entry_fn)(uint32_t host_abi_major, uint32_t host_abi_minor);

#ifdef __cplusplus
}
#endif

#endif /* KMS_PLUGIN_H */
