/*
 * kpc_log.c -- kpc_logf(): format a line and pass it to the host's log.
 * See kpc_log.h for the rules (no secrets, no locks held).
 */
#include "kpc_log.h"

#include "kms_plugin_util.h"

#include <stdarg.h>
#include <stdio.h>

void kpc_logf(const kpc_logger *lg, kms_log_level level, const char *fmt, ...) {
  if (!lg || !lg->host) return;
  const kms_host *h = lg->host;
  if (!KMS_FIELD_PRESENT(h, kms_host, log) || !h->log) return;
  char line[512];
  int n = snprintf(line, sizeof line, "%s", lg->prefix ? lg->prefix : "");
  if (n < 0 || (size_t)n >= sizeof line) n = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  h->log(h->ctx, level, line);
}

void kpc_notify(const kpc_logger *lg, const char *name, uint32_t kind, int64_t version,
                const kms_setting *loc, size_t n) {
  const kms_host *h = lg ? lg->host : NULL;
  if (!h || !KMS_FIELD_PRESENT(h, kms_host, notify) || !h->notify) return;
  kms_change ch = {sizeof ch, name, kind, version, n ? loc : NULL, n};
  h->notify(h->ctx, &ch);
}
