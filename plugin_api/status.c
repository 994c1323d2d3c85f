/*
 * status.c -- status names, kms_error formatting, and the small pure checks
 * (slot availability, plugin names, capability text) shared by the loader
 * and, linked statically with hidden visibility, by every plugin.
 */
#include "kms_loader.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *kms_status_str(kms_status status) {
  switch (status) {
  case KMS_OK: return "OK";
  case KMS_NOT_FOUND: return "NOT_FOUND";
  case KMS_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
  case KMS_PERMISSION_DENIED: return "PERMISSION_DENIED";
  case KMS_UNAUTHENTICATED: return "UNAUTHENTICATED";
  case KMS_UNAVAILABLE: return "UNAVAILABLE";
  case KMS_CONFLICT: return "CONFLICT";
  case KMS_UNSUPPORTED: return "UNSUPPORTED";
  case KMS_NO_MEMORY: return "NO_MEMORY";
  case KMS_INTERNAL: return "INTERNAL";
  case KMS_BUFFER_TOO_SMALL: return "BUFFER_TOO_SMALL";
  }
  return "UNKNOWN";
}

void kms_error_clear(kms_error *err) {
  if (!err) return;
  err->status = KMS_OK;
  err->backend_status = 0;
  err->message[0] = '\0';
}

kms_status kms_error_set(kms_error *err, kms_status status, int32_t backend_status,
                         const char *fmt, ...) {
  if (!err) return status;
  err->status = status;
  err->backend_status = backend_status;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  if (n < 0) err->message[0] = '\0';
  /* One printable line: messages quote configuration values and names, and
   * hosts print them to logs and terminals (no injected lines or escapes). */
  for (char *p = err->message; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
  return status;
}

int kms_slot_available(const kms_plugin *plugin, size_t offset, size_t size) {
  if (!plugin) return 0;
  /* Written so that no addition can overflow: offset and size come from
   * offsetof/sizeof, struct_size from the plugin (untrusted). */
  if (offset > plugin->struct_size || size > plugin->struct_size - offset) return 0;
  void (*fn)(void);
  memcpy(&fn, (const char *)plugin + offset, sizeof fn < size ? sizeof fn : size);
  return fn != NULL;
}

int kms_plugin_name_valid(const char *name) {
  if (!name || !*name) return 0;
  size_t n = 0;
  for (const char *p = name; *p; p++, n++) {
    if (n >= KMS_PLUGIN_NAME_MAX) return 0;
    char c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return 0;
  }
  return 1;
}

char *kms_capabilities_str(uint64_t caps, char *buf, size_t size) {
  static const struct { uint64_t bit; const char *name; } names[] = {
    {KMS_CAP_READ, "read"},       {KMS_CAP_WRITE, "write"},
    {KMS_CAP_DELETE, "delete"},   {KMS_CAP_REFRESH, "refresh"},
    {KMS_CAP_THREAD_SAFE, "thread-safe"}, {KMS_CAP_LIST, "list"},
    {KMS_CAP_NOTIFY, "notify"},
  };
  if (!buf || size == 0) return buf;
  buf[0] = '\0';
  size_t used = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (!(caps & names[i].bit)) continue;
    int n = snprintf(buf + used, size - used, "%s%s", used ? "," : "", names[i].name);
    if (n < 0 || (size_t)n >= size - used) { /* whole names only */
      buf[used] = '\0';
      break;
    }
    used += (size_t)n;
  }
  if (used == 0) snprintf(buf, size, "none");
  return buf;
}
