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
 * ABI minor that introduced a name; everything below is 1.0.
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
#define KMS_ABI_MINOR 0

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
  KMS_INTERNAL = 9           /* a bug or an unexpected backend answer */
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
} kms_host;

/* One key/value pair from the gateway's key_management_settings. Both strings
 * are borrowed for the duration of create(). Layout frozen. Added in 1.0. */
typedef struct kms_setting {
  const char *key;
  const char *value;
} kms_setting;

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

/* kms_write_options.flags. Added in 1.0. */
#define KMS_WRITE_CAS 0x1u /* honour cas_version (check-and-set) */

/*
 * Optional arguments of write_secret. Size-prefixed; NULL means defaults.
 *   description  human text stored next to the secret (Vault: custom_metadata),
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
