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

#endif
