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

/* ---------------------------------------------------------------------- */
/* Added in 1.1: per-call options, buffer reads, health counters.          */

/* Which call a kms_call_options belongs to (what kms_options_check allows). */
typedef enum kms_call_kind {
  KMS_CALL_KIND_READ = 0,   /* flags, location, version */
  KMS_CALL_KIND_WRITE = 1,  /* location */
  KMS_CALL_KIND_DELETE = 2, /* location, delete_mode, recovery_window_days */
  KMS_CALL_KIND_LIST = 3    /* location */
} kms_call_kind;

/* 1 if `options` is NULL or every field inside its struct_size is zero:
 * the call means exactly what the 1.0 slot does. */
int kms_call_options_default(const kms_call_options *options);

/*
 * Check `options` for a call of `kind` the way ABI 1.1 obliges a plugin to:
 * a struct_size too small for the header, an unknown flag bit, flags or
 * fields that do not apply to `kind`, NONBLOCKING with BYPASS_CACHE, an
 * unknown delete_mode, a location entry with a NULL key or value, a location
 * key twice, or (when `known_keys`, a NULL-terminated list, is not NULL) a
 * location key not in it are KMS_INVALID_ARGUMENT with a message that starts
 * with `who` (the plugin's name) and names the offending key or field.
 * NULL options are fine. The loader runs it with known_keys NULL before a
 * plugin sees the options; a plugin runs it with its own keys.
 */
kms_status kms_options_check(const kms_call_options *options, kms_call_kind kind,
                             const char *const *known_keys, const char *who, kms_error *err);

/* The value of location key `key` in `options`, or NULL if absent. */
const char *kms_options_get(const kms_call_options *options, const char *key);

/*
 * The body of a read_secret_into: copy `length` bytes at `value` and a NUL
 * into buf and fill `info` (fields inside its struct_size), or, if `size` <
 * length + 1, return KMS_BUFFER_TOO_SMALL with info->length = length and
 * buf untouched. Allocates nothing. `who` starts the error message.
 */
kms_status kms_secret_copy_into(const char *value, size_t length, int64_t version, uint32_t flags,
                                char *buf, size_t size, kms_secret_info *info, const char *who,
                                kms_error *err);

/* Counters a plugin keeps for its health slot (opaque; lock-free counters,
 * a mutex only around the last error's text). Thread-safe. */
typedef struct kms_stats kms_stats;
typedef enum kms_stat {
  KMS_STAT_HITS = 0,
  KMS_STAT_MISSES,
  KMS_STAT_NEGATIVE_HITS,
  KMS_STAT_STALE_SERVES,
  KMS_STAT_FETCHES,
  KMS_STAT_LOGINS,
  KMS_STAT_RENEWALS,
  KMS_STAT_COUNT /* not a counter: how many there are */
} kms_stat;

/* A zeroed set of counters, or NULL when out of memory. */
kms_stats *kms_stats_new(void);
/* NULL is a no-op. */
void kms_stats_free(kms_stats *stats);
/* Add n to one counter. NULL stats is a no-op. */
void kms_stats_add(kms_stats *stats, kms_stat which, uint64_t n);
/* Record the outcome of a call: a status other than KMS_OK is counted by
 * status, and err's message (which by the ABI's rules holds no secret) and
 * the time become the last error. Returns `status`, so a slot can end with
 * `return kms_stats_result(stats, st, err);`. */
kms_status kms_stats_result(kms_stats *stats, kms_status status, const kms_error *err);
/* Copy the counters and the last error into the fields of `out` that lie
 * inside its struct_size; the other fields (reachable, cache_entries, ...)
 * are the plugin's to fill. */
void kms_stats_fill(kms_stats *stats, kms_health *out);

/* kms_secret_new in one allocation (the struct, then the bytes): one malloc
 * and one free per read instead of two, for the read paths a host calls
 * per request. Only kms_secret_free_packed may free it (not
 * kms_secret_free), so a plugin using it sets that as its free_secret slot
 * and makes every secret it returns this way. Same errors as
 * kms_secret_new. */
kms_status kms_secret_new_packed(const char *value, size_t length, kms_secret **out,
                                 kms_error *err);
/* Wipe (struct and bytes) and free a secret from kms_secret_new_packed.
 * NULL is a no-op. Usable directly as the table's free_secret slot. */
void kms_secret_free_packed(kms_secret *secret);

/* Which of `n` stripes (per-CPU copies of a lock or counter) the calling
 * thread should use: the CPU it runs on, modulo n; 0 when n <= 1 or the CPU
 * is unknown. A hint only: the thread may move to another CPU at any time,
 * so a caller that locks stripe i must remember i and unlock that one. */
unsigned kms_cpu_stripe(unsigned n);

#ifdef __cplusplus
}
#endif

#endif /* KMS_PLUGIN_UTIL_H */
