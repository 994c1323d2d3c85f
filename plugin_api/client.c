/*
 * client.c -- kms_client: one plugin instance, called only through slots the
 * ABI says exist, with errors always filled. Hosts call plugins through here.
 */
#include "kms_loader.h"

#include <stdlib.h>
#include <string.h>

/* The slots a read uses, looked up once at create (the plugin's table is
 * immutable and kms_slot_available has already said whether each lies
 * inside its struct_size), so that a read does not check them again:
 * NULL when the plugin lacks the slot. Immutable after create: any thread. */
typedef struct read_slots {
  kms_status (*read)(kms_instance *, const char *, kms_secret **, kms_error *);
  void (*free_secret)(kms_secret *);
  kms_status (*read_opt)(kms_instance *, const char *, const kms_call_options *, kms_secret **,
                         kms_error *);
  kms_status (*read_into)(kms_instance *, const char *, const kms_call_options *, char *, size_t,
                          kms_secret_info *, kms_error *);
} read_slots;

struct kms_client {
  const kms_plugin *plugin;
  kms_instance *instance;
  read_slots slot;
};

static read_slots slots_of(const kms_plugin *p) {
  read_slots r = {0};
  /* a read needs free_secret too: without it, no allocating read at all */
  int can_free = KMS_SLOT_AVAILABLE(p, free_secret);
  if (can_free) r.free_secret = p->free_secret;
  if (can_free && KMS_SLOT_AVAILABLE(p, read_secret)) r.read = p->read_secret;
  if (can_free && KMS_SLOT_AVAILABLE(p, read_secret_opt)) r.read_opt = p->read_secret_opt;
  if (KMS_SLOT_AVAILABLE(p, read_secret_into)) r.read_into = p->read_secret_into;
  return r;
}

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
  c->slot = slots_of(p);
  kms_error local = {0};
  kms_error *e = err ? err : &local;
  kms_error_clear(e);
  kms_status st = p->create(host, settings, n_settings, &c->instance, e);
  if (st == KMS_OK && !c->instance)
    st = kms_error_set(e, KMS_INTERNAL, 0, "plugin '%s' create returned OK without an instance",
                       p->name);
  if (st != KMS_OK) {
    free(c);
    return finish(&(kms_client){p, NULL, {0}}, "create", st, err);
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

/* The error a plugin fills: the caller's, or a local one when the caller
 * wants no details (a plugin always gets a non-NULL err). */
static kms_error *plugin_err(kms_error *err, kms_error *local) {
  kms_error *e = err ? err : local;
  kms_error_clear(e);
  return e;
}

/* After a plugin's read: a secret only with KMS_OK, and a well-formed one. */
static kms_status check_read(const kms_client *c, kms_status st, kms_secret **out, kms_error *e) {
  if (st == KMS_OK && (!*out || !(*out)->value || !KMS_SECRET_HAS(*out, length))) {
    if (*out) c->plugin->free_secret(*out);
    *out = NULL;
    st = kms_error_set(e, KMS_INTERNAL, 0, "plugin '%s' returned a malformed secret",
                       c->plugin->name);
  } else if (st != KMS_OK && *out) {
    c->plugin->free_secret(*out);
    *out = NULL;
  }
  return st;
}

kms_status kms_client_read(kms_client *c, const char *name, kms_secret **out, kms_error *err) {
  kms_error_clear(err);
  if (!c || !out) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_read: NULL argument");
  *out = NULL;
  if (!c->slot.read) return unsupported(c, "read_secret", err);
  kms_status st = check_name(name, err);
  if (st != KMS_OK) return st;
  kms_error local;
  kms_error *e = plugin_err(err, &local);
  st = c->slot.read(c->instance, name, out, e);
  return finish(c, "read_secret", check_read(c, st, out, e), err);
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
  if (c->slot.free_secret) c->slot.free_secret(secret);
}

/* ---------------------------------------------------------------------- */
/* ABI 1.1: options, buffer reads, listing, health.                        */

/* The plugin lacks the 1.1 slot `slot` and the caller asked for options
 * only that slot can honour: say so, and what to do. */
static kms_status needs_1_1(const kms_client *c, const char *slot, kms_error *err) {
  return kms_error_set(err, KMS_UNSUPPORTED, 0,
                       "plugin '%s' (ABI %u.%u) does not provide %s, so it cannot take per-call "
                       "options (location, version, flags, delete mode): update the plugin to "
                       "ABI 1.1, or call without options", c->plugin->name, c->plugin->abi_major,
                       c->plugin->abi_minor, slot);
}

kms_status kms_client_read_opt(kms_client *c, const char *name, const kms_call_options *options,
                               kms_secret **out, kms_error *err) {
  kms_error_clear(err);
  if (!c || !out)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_read_opt: NULL argument");
  *out = NULL;
  kms_status st = kms_options_check(options, KMS_CALL_KIND_READ, NULL, "kms_client_read_opt", err);
  if (st != KMS_OK) return st;
  if (!c->slot.read_opt) {
    if (kms_call_options_default(options)) return kms_client_read(c, name, out, err);
    return needs_1_1(c, "read_secret_opt", err);
  }
  if ((st = check_name(name, err)) != KMS_OK) return st;
  kms_error local;
  kms_error *e = plugin_err(err, &local);
  st = c->slot.read_opt(c->instance, name, options, out, e);
  return finish(c, "read_secret_opt", check_read(c, st, out, e), err);
}

/* read_secret_into for a plugin without the slot: an allocating read, then
 * the copy. Same results, not the same cost. */
static kms_status read_into_fallback(kms_client *c, const char *name,
                                     const kms_call_options *options, char *buf, size_t size,
                                     kms_secret_info *info, kms_error *err) {
  kms_secret *s = NULL;
  kms_status st = kms_client_read_opt(c, name, options, &s, err);
  if (st != KMS_OK) return st;
  st = kms_secret_copy_into(s->value, s->length, KMS_SECRET_HAS(s, version) ? s->version : 0,
                            KMS_SECRET_HAS(s, flags) ? s->flags : 0, buf, size, info,
                            "kms_client_read_into", err);
  c->plugin->free_secret(s);
  return st;
}

kms_status kms_client_read_into(kms_client *c, const char *name, const kms_call_options *options,
                                char *buf, size_t size, kms_secret_info *info, kms_error *err) {
  kms_error_clear(err);
  if (!c || !info || (!buf && size))
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_read_into: NULL argument");
  if (info->struct_size < offsetof(kms_secret_info, length) + sizeof info->length)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "kms_client_read_into: set info->struct_size to "
                         "sizeof(kms_secret_info)");
  if (!c->slot.read_into) return read_into_fallback(c, name, options, buf, size, info, err);
  kms_status st = kms_options_check(options, KMS_CALL_KIND_READ, NULL, "kms_client_read_into", err);
  if (st == KMS_OK) st = check_name(name, err);
  if (st != KMS_OK) return st;
  kms_error local;
  kms_error *e = plugin_err(err, &local);
  st = c->slot.read_into(c->instance, name, options, buf, size, info, e);
  if (st == KMS_OK && (info->length >= size || buf[info->length] != '\0')) {
    kms_wipe(buf, size);
    st = kms_error_set(e, KMS_INTERNAL, 0, "plugin '%s' overran the read buffer's bounds",
                       c->plugin->name);
  }
  return finish(c, "read_secret_into", st, err);
}

kms_status kms_client_write_opt(kms_client *c, const char *name, const char *value,
                                size_t length, const kms_write_options *write_options,
                                const kms_call_options *options, kms_error *err) {
  kms_error_clear(err);
  if (!c) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_write_opt: NULL client");
  kms_status st = kms_options_check(options, KMS_CALL_KIND_WRITE, NULL, "kms_client_write_opt", err);
  if (st != KMS_OK) return st;
  if (!KMS_SLOT_AVAILABLE(c->plugin, write_secret_opt)) {
    if (kms_call_options_default(options))
      return kms_client_write(c, name, value, length, write_options, err);
    return needs_1_1(c, "write_secret_opt", err);
  }
  if ((st = check_name(name, err)) != KMS_OK) return st;
  if (!value && length)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "secret value is NULL");
  kms_error local;
  kms_error *e = plugin_err(err, &local);
  st = c->plugin->write_secret_opt(c->instance, name, value ? value : "", length, write_options,
                                   options, e);
  return finish(c, "write_secret_opt", st, err);
}

kms_status kms_client_delete_opt(kms_client *c, const char *name, const kms_call_options *options,
                                 kms_error *err) {
  kms_error_clear(err);
  if (!c) return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_delete_opt: NULL client");
  kms_status st = kms_options_check(options, KMS_CALL_KIND_DELETE, NULL, "kms_client_delete_opt", err);
  if (st != KMS_OK) return st;
  if (!KMS_SLOT_AVAILABLE(c->plugin, delete_secret_opt)) {
    if (kms_call_options_default(options)) return kms_client_delete(c, name, err);
    return needs_1_1(c, "delete_secret_opt", err);
  }
  if ((st = check_name(name, err)) != KMS_OK) return st;
  kms_error local;
  kms_error *e = plugin_err(err, &local);
  st = c->plugin->delete_secret_opt(c->instance, name, options, e);
  return finish(c, "delete_secret_opt", st, err);
}

kms_status kms_client_list(kms_client *c, const char *prefix, const kms_call_options *options,
                           kms_list_fn fn, void *ctx, kms_error *err) {
  kms_error_clear(err);
  if (!c || !fn)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_list: NULL argument");
  kms_status st = kms_options_check(options, KMS_CALL_KIND_LIST, NULL, "kms_client_list", err);
  if (st != KMS_OK) return st;
  if (!KMS_SLOT_AVAILABLE(c->plugin, list_secrets)) return unsupported(c, "list_secrets", err);
  kms_error local;
  kms_error *e = plugin_err(err, &local);
  st = c->plugin->list_secrets(c->instance, prefix ? prefix : "", options, fn, ctx, e);
  return finish(c, "list_secrets", st, err);
}

/* kms_client_list_names' collector. */
struct name_list {
  char **names;
  size_t n, cap;
  int failed; /* out of memory */
};

static int collect_name(void *ctx, const char *name) {
  struct name_list *l = ctx;
  if (l->n == l->cap) {
    size_t ncap = l->cap ? l->cap * 2 : 16;
    char **nn = realloc(l->names, ncap * sizeof *nn);
    if (!nn) return l->failed = 1;
    l->names = nn;
    l->cap = ncap;
  }
  if (!name || !(l->names[l->n] = strdup(name))) return l->failed = 1;
  l->n++;
  return 0;
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

kms_status kms_client_list_names(kms_client *c, const char *prefix,
                                 const kms_call_options *options, char ***names, size_t *count,
                                 kms_error *err) {
  if (!names || !count)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_list_names: NULL argument");
  *names = NULL;
  *count = 0;
  struct name_list l = {0};
  kms_status st = kms_client_list(c, prefix, options, collect_name, &l, err);
  if (st == KMS_OK && l.failed)
    st = kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory listing plugin '%s'",
                       c->plugin->name);
  if (st != KMS_OK) {
    kms_client_list_names_free(l.names, l.n);
    return st;
  }
  if (l.n) qsort(l.names, l.n, sizeof *l.names, name_cmp);
  *names = l.names;
  *count = l.n;
  return KMS_OK;
}

void kms_client_list_names_free(char **names, size_t count) {
  if (!names) return;
  for (size_t i = 0; i < count; i++) free(names[i]);
  free(names);
}

kms_status kms_client_health(kms_client *c, kms_health *out, kms_error *err) {
  kms_error_clear(err);
  if (!c || !out)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "kms_client_health: NULL argument");
  size_t size = out->struct_size;
  if (size < offsetof(kms_health, reachable) + sizeof out->reachable)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "kms_client_health: set out->struct_size to sizeof(kms_health)");
  memset(out, 0, size); /* the caller's struct, as large as it says (a newer header's too) */
  out->struct_size = size;
  /* "Unknown" until the plugin says otherwise. */
  out->reachable = -1;
  if (KMS_FIELD_PRESENT(out, kms_health, authenticated)) out->authenticated = -1;
  if (KMS_FIELD_PRESENT(out, kms_health, token_ttl_seconds)) out->token_ttl_seconds = -1;
  if (!KMS_SLOT_AVAILABLE(c->plugin, health)) return unsupported(c, "health", err);
  kms_error local;
  kms_error *e = plugin_err(err, &local);
  kms_status st = c->plugin->health(c->instance, out, e);
  out->struct_size = size;
  return finish(c, "health", st, err);
}
