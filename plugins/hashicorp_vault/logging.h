/*
 * logging.h -- the plugin's one way to talk to the host's log callback.
 *
 * What lives here: vault_logger (a borrowed kms_host pointer) and
 * vault_logf(), which formats a line prefixed "hashicorp_vault: " and hands it
 * to host->log if the host provides one (checked with KMS_FIELD_PRESENT).
 *
 * Rules for callers: never pass a token or a secret value; never call while
 * holding a plugin lock (the ABI forbids calling back into the host then).
 * Thread-safety: vault_logf is thread-safe (the host's log must be).
 */
#ifndef VAULT_LOGGING_H
#define VAULT_LOGGING_H

#include "kms_plugin.h"

/* Put once in front of every log line (vault_logf) and every error message
 * (plugin.c, on the way out of a slot); nothing else writes it. */
#define VAULT_MSG_PREFIX "hashicorp_vault: "

typedef struct vault_logger {
  const kms_host *host; /* may be NULL: silent */
} vault_logger;

void vault_logf(const vault_logger *lg, kms_log_level level, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
