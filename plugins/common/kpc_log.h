/*
 * kpc_log.h -- a plugin's one way to talk to the host's log callback.
 *
 * What lives here: kpc_logger (a borrowed kms_host pointer and the plugin's
 * message prefix, e.g. "hashicorp_vault: ") and kpc_logf(), which formats a
 * line with that prefix and hands it to host->log if the host provides one
 * (checked with KMS_FIELD_PRESENT).
 *
 * Rules for callers: never pass a token, a credential or a secret value;
 * never call while holding a plugin lock (the ABI forbids calling back into
 * the host then).
 * Thread-safety: kpc_logf is thread-safe (the host's log must be).
 */
#ifndef KPC_LOG_H
#define KPC_LOG_H

#include "kms_plugin.h"

typedef struct kpc_logger {
  const kms_host *host; /* may be NULL: silent */
  const char *prefix;   /* put in front of every line; NULL: none */
} kpc_logger;

void kpc_logf(const kpc_logger *lg, kms_log_level level, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* host->notify (ABI 1.1), if the host has one (KMS_FIELD_PRESENT): a change
 * of `name` (kind KMS_CHANGE_*, version 0 if the backend has none) seen
 * under location override `loc` (n entries; 0: the instance's own).
 * Thread-safety: any thread; never call it holding a plugin lock (the host
 * may call back into the instance). */
void kpc_notify(const kpc_logger *lg, const char *name, uint32_t kind, int64_t version,
                const kms_setting *loc, size_t n);

#endif
