/*
 * kms_plugin_util.h -- helpers for plugin authors, in the small static
 * library libkmsplugutil.a (installed beside the headers).
 *
 * What a plugin needs besides the ABI: status names, kms_error formatting,
 * the size-prefix field check, a wipe the compiler cannot drop, and a
 * kms_secret allocator whose free function can be the plugin's free_secret
 * slot as it stands. Every in-tree plugin and docs/examples/hello_plugin.c
 * use these; out of tree:
 *
 *   cc $(pkg-config --cflags kmsplug-plugin) -shared -fPIC -fvisibility=hidden \
 *      my_store.c $(pkg-config --libs kmsplug-plugin) -o my_store.so
 *
 * or, with CMake, find_package(kmsplug) and link kmsplug::plugin_util. The
 * library is built with hidden visibility, so a plugin linking it still
 * exports only kms_plugin_entry. libkmsloader carries the same functions for
 * hosts (kms_loader.h includes this header).
 *
 * Every function here is thread-safe and never calls back into a host.
 */
#ifndef KMS_PLUGIN_UTIL_H
#define KMS_PLUGIN_UTIL_H

#include "kms_plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A static English name for a status ("OK", "NOT_FOUND", ...); never NULL.
 * Unknown values give "UNKNOWN". */
const char *kms_status_str(kms_status status);

/* Fill `err` (if not NULL) with `status`, `backend_status` and a printf-style
 * message (truncated to fit; control characters, which quoted values may
 * carry, become '?' so it stays one printable line), and return `status`.
 * The message says what failed and what to do, and never holds a secret. */
kms_status kms_error_set(kms_error *err, kms_status status, int32_t backend_status,
                         const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Reset `err` to KMS_OK with an empty message. NULL is a no-op. */
void kms_error_clear(kms_error *err);

/* 1 if a field of a size-prefixed struct (kms_secret, kms_host,
 * kms_write_options, ...) lies inside the struct_size its writer set: read a
 * field only then. */
#define KMS_FIELD_PRESENT(ptr, type, field) \
  ((ptr)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))
#define KMS_SECRET_HAS(secret, field) KMS_FIELD_PRESENT(secret, kms_secret, field)

/* Overwrite `size` bytes at `p` with zeros in a way the compiler does not
 * remove as a dead store. NULL or 0 is a no-op. */
void kms_wipe(void *p, size_t size);

/*
 * A new kms_secret holding a copy of `length` bytes at `value` (NUL appended,
 * not counted), struct_size set, version 0, no flags: set those after if the
 * backend has them. On failure *out is NULL and `err` says why
 * (KMS_NO_MEMORY; KMS_INVALID_ARGUMENT for a NULL value with a length).
 * Release it with kms_secret_free.
 */
kms_status kms_secret_new(const char *value, size_t length, kms_secret **out, kms_error *err);

/* Wipe and free a secret from kms_secret_new: its bytes, then the struct.
 * NULL is a no-op. Usable directly as the table's free_secret slot. */
void kms_secret_free(kms_secret *secret);

#ifdef __cplusplus
}
#endif

#endif /* KMS_PLUGIN_UTIL_H */
