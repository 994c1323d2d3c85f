/*
 * logging.c -- vault_logf(): format a line and pass it to the host's log.
 * See logging.h for the rules (no secrets, no locks held).
 */
#include "logging.h"

#include "kms_plugin_util.h"

#include <stdarg.h>
#include <stdio.h>

void vault_logf(const vault_logger *lg, kms_log_level level, const char *fmt, ...) {
  if (!lg || !lg->host) return;
  const kms_host *h = lg->host;
  if (!KMS_FIELD_PRESENT(h, kms_host, log) || !h->log) return;
  char line[512];
  int n = snprintf(line, sizeof line, VAULT_MSG_PREFIX);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  h->log(h->ctx, level, line);
}
