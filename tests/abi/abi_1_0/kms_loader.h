/*
 * kms_loader.h -- the host side of the kmsplug ABI (libkmsloader).
 *
 * What lives here: finding and loading a plugin by its config name
 * (kms_module_*), listing the plugins in a directory, and a thin client
 * (kms_client_*) that owns one plugin instance and calls its slots only when
 * the ABI says they exist. Hosts should call plugins through kms_client_*
 * rather than through the raw table: the version checks are done once, here.
 *
 * Error reporting follows libcurl: every function returns a kms_status and,
 * where it takes one, fills a caller-owned kms_error (which may be NULL when
 * the caller does not want details). The status and error helpers shared
 * with plugins are declared in kms_plugin_util.h, included here; this
 * library defines them too.
 */
#ifndef KMS_LOADER_H
#define KMS_LOADER_H

#include "kms_plugin.h"
#include "kms_plugin_util.h" /* kms_status_str, kms_error_set, KMS_SECRET_HAS, ... */

#ifdef __cplusplus
extern "C" {
#endif

/* Longest accepted plugin name (config names match [a-z0-9_]{1,64}). */
#define KMS_PLUGIN_NAME_MAX 64

/* Environment variable naming the plugin directory when none is given. */
#define KMS_PLUGIN_PATH_ENV "KMS_PLUGIN_PATH"

/*
 * 1 if the slot at byte `offset` with `size` bytes lies inside
 * plugin->struct_size and the function pointer stored there is not NULL,
 * else 0. The single place that decides whether a table slot may be used.
 * Use through KMS_SLOT_AVAILABLE(plugin, field). Thread-safe.
 */
int kms_slot_available(const kms_plugin *plugin, size_t offset, size_t size);
#define KMS_SLOT_AVAILABLE(plugin, field) \
  kms_slot_available((plugin), offsetof(kms_plugin, field), sizeof(((kms_plugin *)0)->field))

/* 1 if `name` is a valid plugin name: [a-z0-9_]{1,KMS_PLUGIN_NAME_MAX}. */
int kms_plugin_name_valid(const char *name);

/*
 * The plugin directory to use: `explicit_dir` if not NULL/empty, else
 * $KMS_PLUGIN_PATH if set and not empty, else the installed default
 * (<libdir>/kmsplug/plugins). The returned pointer is one of the inputs, the
 * environment's string, or a static string. Not thread-safe against
 * concurrent setenv().
 */
const char *kms_plugin_dir(const char *explicit_dir);

/* A plugin shared object loaded and checked. Opaque. */
typedef struct kms_module kms_module;

/*
 * Load <dir>/<name>.so (dir resolved by kms_plugin_dir()):
 *   1. refuse a name that is not [a-z0-9_]{1,64} before any file access;
 *   2. trust, as OpenSSH's StrictModes: the plugin file and every directory
 *      from it up to "/" must be owned by root or by this process's effective
 *      user and must not be writable by group or others (a sticky,
 *      world-writable directory such as /tmp is refused too). Symlinks are
 *      resolved and the resolved file's directories are checked the same
 *      way; a symlink on the way must itself sit in such a directory. The
 *      file must be a regular file;
 *   3. open the file and check the descriptor (fstat), then
 *      dlopen("/proc/self/fd/N", RTLD_NOW | RTLD_LOCAL): what runs is the
 *      file that was checked, even if the path is swapped meanwhile (so
 *      /proc must be mounted). Look up kms_plugin_entry, call it with this
 *      header's ABI version;
 *   4. check the major, that struct_size covers at least create and destroy
 *      (the minor is informational: struct_size says which slots exist), that
 *      name == the file name, and
 *      that create and destroy are present.
 * On failure nothing stays loaded, *out is NULL and `err` names the path and
 * the reason (for a missing file, also the plugin names the directory holds;
 * for an untrusted path, its owner and mode): KMS_INVALID_ARGUMENT (bad
 * name), KMS_NOT_FOUND (no such file or directory), KMS_PERMISSION_DENIED
 * (untrusted owner or permissions), KMS_UNSUPPORTED (not a plugin, wrong
 * ABI). A loaded module keeps one descriptor open (close-on-exec).
 * Thread-safe (dlopen is).
 */
kms_status kms_module_load(const char *dir, const char *name, kms_module **out, kms_error *err);

/* The checked function table; valid until kms_module_unload. */
const kms_plugin *kms_module_plugin(const kms_module *module);

/* The path the module was loaded from; valid until kms_module_unload. */
const char *kms_module_path(const kms_module *module);

/* dlclose and free. Every client, instance and secret from this module must
 * be gone first. NULL is a no-op. Thread-safe. */
void kms_module_unload(kms_module *module);

/* One entry of kms_plugin_list(). When status is not KMS_OK the file looked
 * like a plugin by name but could not be loaded; `error` says why and only
 * `name` and `path` are meaningful. */
typedef struct kms_plugin_info {
  char name[KMS_PLUGIN_NAME_MAX + 1];
  char path[4096];
  char version[64];
  uint32_t abi_major;
  uint32_t abi_minor;
  uint64_t capabilities;
  kms_status status;
  char error[KMS_ERROR_MESSAGE_SIZE];
} kms_plugin_info;

/*
 * List every <name>.so with a valid name in `dir` (resolved by
 * kms_plugin_dir()), sorted by name, loading each to read its table (and
 * unloading it again). *out is a malloc'ed array of *count entries, freed
 * with kms_plugin_list_free(). A missing directory is KMS_NOT_FOUND.
 */
kms_status kms_plugin_list(const char *dir, kms_plugin_info **out, size_t *count, kms_error *err);
void kms_plugin_list_free(kms_plugin_info *list);

/* Format capability bits as "read,write,delete,refresh,thread-safe" into
 * buf (always NUL-terminated). Returns buf. */
char *kms_capabilities_str(uint64_t capabilities, char *buf, size_t size);

/* ---------------------------------------------------------------------- */
/* Client: one plugin instance, called safely.                             */

typedef struct kms_client kms_client;

/*
 * Create an instance of `module`'s plugin with `host` (may be NULL: no log,
 * process environment) and `settings`. The module must outlive the client.
 * On failure no client exists, but the module stays loaded: its table
 * (kms_module_plugin) still tells the host the plugin's capabilities, e.g. to
 * queue work when create failed with KMS_UNAVAILABLE.
 * Not thread-safe with respect to other calls on the same client.
 */
kms_status kms_client_create(const kms_module *module, const kms_host *host,
                             const kms_setting *settings, size_t n_settings, kms_client **out,
                             kms_error *err);

/* Destroy the instance and free the client. NULL is a no-op. Must not run
 * concurrently with any other call on the client. */
void kms_client_destroy(kms_client *client);

/*
 * The operations. Each returns KMS_UNSUPPORTED (without calling the plugin)
 * when the slot is absent from the plugin's table, fills `err` on failure
 * even if the plugin forgot to, and treats a NULL or empty name as
 * KMS_INVALID_ARGUMENT. Thread-safe iff the plugin declares
 * KMS_CAP_THREAD_SAFE; otherwise the caller serialises calls.
 */
kms_status kms_client_read(kms_client *client, const char *name, kms_secret **out, kms_error *err);
kms_status kms_client_write(kms_client *client, const char *name, const char *value, size_t length,
                            const kms_write_options *options, kms_error *err);
kms_status kms_client_delete(kms_client *client, const char *name, kms_error *err);
kms_status kms_client_refresh(kms_client *client, kms_error *err);

/* Release a secret from kms_client_read (wipes it). NULL is a no-op.
 * Thread-safe. */
void kms_client_free_secret(kms_client *client, kms_secret *secret);

/* The table behind a client. */
const kms_plugin *kms_client_plugin(const kms_client *client);

#ifdef __cplusplus
}
#endif

#endif /* KMS_LOADER_H */
