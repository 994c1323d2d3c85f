/*
 * client.c -- kms_client: one plugin instance, called only through slots the
 * ABI says exist, with errors always filled. Hosts call plugins through here.
 */
#include "kms_loader.h"

#include <stdlib.h>
#include <string.h>

struct kms_client {
  const kms_plugin *plugin;
  kms_instance *instance;
};

/* After a plugin call: make sure err agrees with the returned status even if
 * the plugin forgot to fill it. */
static kms_status finish(const kms_client *c, const char *op, kms_status st, kms_error *err) {
  if (!err) return st;
  if (st == KMS_OK) {
    kms_error_clear(err);
    return st;
  }
  err->status = st;
  if (err->message[0] == '\0')
    kms_error_set(err, st, err->backend_status, "plugin '%s' %s failed: %s", c->plugin->name, op,
                  kms_status_str(st));
  return st;
}

static kms_status unsupported(const kms_client *c, const char *op, kms_error *err) {
  return kms_error_set(err, KMS_UNSUPPORTED, 0,
                       "plugin '%s' (ABI %u.%u) does not provide %s", c->plugin->name,
                       c->plugin->abi_major, c->plugin->abi_minor, op);
}

static kms_status check_name(const char *name, kms_error *err) {
  if (!name || !*name)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "secret name is empty");
  return KMS_OK;
}

kms_status kms_client_create(const kms_module *module, const kms_host *host,
                             const kms_setting *settings, size_t n_settings, kms_client **out,
                             kms_error *err) {
  kms_error_clear(err);
  if (!out) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_create: out is NULL");
  *out = NULL;
  const kms_plugin *p = kms_module_plugin(module);
  if (!p) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_create: no module");
  if (n_settings && !settings)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_create: settings is NULL");
  kms_client *c = calloc(1, sizeof *c);
  if (!c) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  c->plugin = p;
  kms_error local = {0};
  kms_error *e = err ? err : &local;
  kms_error_clear(e);
  kms_status st = p->create(host, settings, n_settings, &c->instance, e);
  if (st == KMS_OK && !c->instance)
    st = kms_error_set(e, KMS_INTERNAL, 0, "plugin '%s' create returned OK without an instance",
                       p->name);
  if (st != KMS_OK) {
    free(c);
    return finish(&(kms_client){p, NULL}, "create", st, err);
  }
  *out = c;
  return KMS_OK;
}

void kms_client_destroy(kms_client *c) {
  if (!c) return;
  c->plugin->destroy(c->instance);
  free(c);
}

const kms_plugin *kms_client_plugin(const kms_client *c) { return c ? c->plugin : NULL; }

kms_status kms_client_read(kms_client *c, const char *name, kms_secret **out, kms_error *err) {
  kms_error_clear(err);
  if (!c || !out) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_read: NULL argument");
  *out = NULL;
  if (!KMS_SLOT_AVAILABLE(c->plugin, read_secret) || !KMS_SLOT_AVAILABLE(c->plugin, free_secret))
    return unsupported(c, "read_secret", err);
  kms_status st = check_name(name, err);
  if (st != KMS_OK) return st;
  kms_error local = {0};
  kms_error *e = err ? err : &local;
  kms_error_clear(e);
  st = c->plugin->read_secret(c->instance, name, out, e);
  if (st == KMS_OK && (!*out || !(*out)->value ||
                       !KMS_SECRET_HAS(*out, length))) {
    if (*out) c->plugin->free_secret(*out);
    *out = NULL;
    st = kms_error_set(e, KMS_INTERNAL, 0, "plugin '%s' returned a malformed secret",
                       c->plugin->name);
  } else if (st != KMS_OK && *out) {
    c->plugin->free_secret(*out);
    *out = NULL;
  }
  return finish(c, "read_secret", st, err);
}

kms_status kms_client_write(kms_client *c, const char *name, const char *value, size_t length,
                            const kms_write_options *options, kms_error *err) {
  kms_error_clear(err);
  if (!c) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_write: NULL client");
  if (!KMS_SLOT_AVAILABLE(c->plugin, write_secret)) return unsupported(c, "write_secret", err);
  kms_status st = check_name(name, err);
  if (st != KMS_OK) return st;
  if (!value && length)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "secret value is NULL");
  kms_error local = {0};
  kms_error *e = err ? err : &local;
  kms_error_clear(e);
  st = c->plugin->write_secret(c->instance, name, value ? value : "", length, options, e);
  return finish(c, "write_secret", st, err);
}

kms_status kms_client_delete(kms_client *c, const char *name, kms_error *err) {
  kms_error_clear(err);
  if (!c) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_delete: NULL client");
  if (!KMS_SLOT_AVAILABLE(c->plugin, delete_secret)) return unsupported(c, "delete_secret", err);
  kms_status st = check_name(name, err);
  if (st != KMS_OK) return st;
  kms_error local = {0};
  kms_error *e = err ? err : &local;
  kms_error_clear(e);
  st = c->plugin->delete_secret(c->instance, name, e);
  return finish(c, "delete_secret", st, err);
}

kms_status kms_client_refresh(kms_client *c, kms_error *err) {
  kms_error_clear(err);
  if (!c) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_refresh: NULL client");
  if (!KMS_SLOT_AVAILABLE(c->plugin, refresh)) return unsupported(c, "refresh", err);
  kms_error local = {0};
  kms_error *e = err ? err : &local;
  kms_error_clear(e);
  kms_status st = c->plugin->refresh(c->instance, e);
  return finish(c, "refresh", st, err);
}

void kms_client_free_secret(kms_client *c, kms_secret *secret) {
  if (!c || !secret) return;
  if (KMS_SLOT_AVAILABLE(c->plugin, free_secret)) c->plugin->free_secret(secret);
}
