/*
 * keys.c -- virtual keys: generate, delete, regenerate, list.
 *
 * A virtual key is "sk-" + base64url(24 bytes from OpenSSL's RAND_bytes)
 * (192 bits). Only its SHA-256 (hex) is kept, next to a random public key id,
 * the alias and the name it is stored under. Here: the key itself, and the
 * decisions of each change (is the store able to take the work, which name,
 * is the old name dropped); store.c commits the change and its store
 * operations in one transaction, outbox.c delivers them: create writes
 * prefix + (alias or "virtual-key-" + key id), delete removes it, regenerate
 * writes the new value and removes the old name when the name changed. The
 * key is handed to the caller once (host_key_change) and never logged.
 */
#include "host.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void host_base64url(const unsigned char *in, size_t n, char *out) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t o = 0, i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = tbl[v >> 18 & 63];
    out[o++] = tbl[v >> 12 & 63];
    out[o++] = tbl[v >> 6 & 63];
    out[o++] = tbl[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = tbl[v >> 18 & 63];
    out[o++] = tbl[v >> 12 & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = tbl[v >> 18 & 63];
    out[o++] = tbl[v >> 12 & 63];
    out[o++] = tbl[v >> 6 & 63];
  }
  out[o] = '\0';
}

int host_key_new(char out[HOST_KEY_MAX]) {
  unsigned char raw[HOST_KEY_RANDOM_BYTES];
  if (RAND_bytes(raw, sizeof raw) != 1) return -1;
  memcpy(out, "sk-", 3);
  host_base64url(raw, sizeof raw, out + 3);
  OPENSSL_cleanse(raw, sizeof raw);
  return 0;
}

int host_key_id_new(char out[HOST_KEY_ID_HEX + 1]) {
  unsigned char raw[HOST_KEY_ID_HEX / 2];
  if (RAND_bytes(raw, sizeof raw) != 1) return -1;
  for (size_t i = 0; i < sizeof raw; i++) snprintf(out + 2 * i, 3, "%02x", raw[i]);
  return 0;
}

int host_key_hash(const char *key, char out[65]) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  if (EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) return -1;
  for (size_t i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
  return 0;
}

int host_key_format_valid(const char *key) {
  if (strncmp(key, "sk-", 3) != 0) return 0;
  size_t n = strlen(key + 3);
  if (n < 22 || n > HOST_KEY_MAX - 4) return 0; /* >= 128 bits of base64url */
  for (const char *c = key + 3; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
          *c == '-' || *c == '_'))
      return 0;
  return 1;
}

char *host_key_secret_name(const char *prefix, const char *alias, const char *key_id) {
  size_t n = strlen(prefix) + (alias ? strlen(alias) : strlen(key_id) + 12) + 1;
  char *s = malloc(n);
  if (!s) return NULL;
  if (alias) snprintf(s, n, "%s%s", prefix, alias);
  else snprintf(s, n, "%svirtual-key-%s", prefix, key_id);
  return s;
}

/* ------------------------------------------------------------------------ */

void host_key_change_clear(host_key_change *c) {
  OPENSSL_cleanse(c->key, sizeof c->key);
  free(c->alias);
  free(c->secret_name);
  free(c->removed_secret);
  free(c->team_id);
  free(c->location);
  memset(c, 0, sizeof *c);
}

/* With store_virtual_keys, the plugin must be able to do what we will queue,
 * otherwise the work could never land: refuse before changing anything. */
static host_status check_store(host_key_ctx *k, int need_write, int need_delete,
                               host_result *r) {
  const kms_plugin *p = k->plugin;
  if (!p) return host_fail(r, HOST_CONFIG, "store_virtual_keys is on but no plugin is loaded");
  if (k->cfg->access_mode_implied)
    host_log(KMS_LOG_WARN, "store_virtual_keys is true and access_mode is not set: writing "
             "virtual keys, as LiteLLM does (its key hooks check only store_virtual_keys); set "
             "access_mode: read_and_write to say so");
  /* An explicit read_only stays an error: the config contradicts itself. */
  if (k->cfg->access_mode == HOST_ACCESS_READ_ONLY || k->cfg->access_mode == HOST_ACCESS_UNSET)
    return host_fail(r, HOST_CONFIG, "general_settings.key_management_settings: "
                     "store_virtual_keys (writing or deleting virtual keys in the store) needs "
                     "access_mode: write_only or read_and_write (it is read_only%s)",
                     k->cfg->access_mode == HOST_ACCESS_UNSET ? ", the default" : "");
  if ((need_write && !(p->capabilities & KMS_CAP_WRITE)) ||
      (need_delete && !(p->capabilities & KMS_CAP_DELETE)))
    return host_fail(r, HOST_CONFIG, "plugin '%s' cannot %s secrets, so it cannot store virtual "
                     "keys; turn store_virtual_keys off or use a writable store", p->name,
                     need_write ? "write" : "delete");
  return HOST_OK;
}

/* Look a key up by alias or by its value. */
static host_status find(host_key_ctx *k, const char *alias, const char *key, host_key_row *row,
                        host_result *r) {
  char hash[65];
  if (!alias) {
    if (!host_key_format_valid(key))
      return host_fail(r, HOST_FAILED, "'--key' expects a virtual key (sk- followed by at least "
                       "22 base64url characters)");
    if (host_key_hash(key, hash) != 0)
      return host_fail(r, HOST_FAILED, "cannot hash the key (OpenSSL)");
  }
  return host_store_find(k->db, alias, alias ? NULL : hash, row, r);
}

/* A fresh key and its hash in `out`; 0 or HOST_FAILED. */
static host_status new_key(host_key_change *out, char hash[65], host_result *r) {
  if (host_key_new(out->key) == 0 && host_key_hash(out->key, hash) == 0) return HOST_OK;
  OPENSSL_cleanse(out->key, sizeof out->key);
  return host_fail(r, HOST_FAILED, "OpenSSL could not generate a key");
}

static int dup_or_null(char **dst, const char *s) {
  *dst = s ? strdup(s) : NULL;
  return !s || *dst;
}

host_status host_key_generate(host_key_ctx *k, const char *alias, host_key_change *out,
                              host_result *r) {
  return host_key_generate_given(k, alias, NULL, out, r);
}

host_status host_key_generate_given(host_key_ctx *k, const char *alias, const char *given,
                                    host_key_change *out, host_result *r) {
  return host_key_generate_at(k, alias, given, NULL, "", out, r);
}

host_status host_key_generate_at(host_key_ctx *k, const char *alias, const char *given,
                                 const char *team_id, const char *location,
                                 host_key_change *out, host_result *r) {
  memset(out, 0, sizeof *out);
  if (!location) location = "";
  if (given && !host_key_format_valid(given))
    return host_fail(r, HOST_USAGE, "a caller-chosen key must be sk- followed by 22 to %d "
                     "base64url characters (letters, digits, '-', '_')", HOST_KEY_MAX - 4);
  if (alias && !host_alias_valid(alias))
    return host_fail(r, HOST_USAGE, "alias '%s' is not valid: 1 to %d characters, '/'-separated "
                     "segments of letters, digits, '.', '_' and '-', each starting with a letter "
                     "or digit (it becomes a secret name)", alias, HOST_ALIAS_MAX);
  int store = k->cfg->store_virtual_keys;
  if (store && check_store(k, 1, 0, r) != HOST_OK) return r->status;
  char hash[65];
  if (given) {
    snprintf(out->key, sizeof out->key, "%s", given);
    if (host_key_hash(out->key, hash) != 0) {
      host_key_change_clear(out);
      return host_fail(r, HOST_FAILED, "cannot hash the key (OpenSSL)");
    }
    host_key_row row;
    host_result nf = {HOST_OK, ""};
    if (host_store_find(k->db, NULL, hash, &row, &nf) == HOST_OK) {
      host_key_row_free(&row);
      host_key_change_clear(out);
      return host_fail(r, HOST_FAILED, "that key is already in use: choose another");
    }
  } else if (new_key(out, hash, r) != HOST_OK) {
    return r->status;
  }
  if (host_key_id_new(out->key_id) != 0) {
    host_key_change_clear(out);
    return host_fail(r, HOST_FAILED, "OpenSSL could not generate a key id");
  }
  if (store && !(out->secret_name = host_key_secret_name(k->cfg->prefix, alias, out->key_id))) {
    host_key_change_clear(out);
    return host_fail(r, HOST_FAILED, "out of memory");
  }
  if (!dup_or_null(&out->alias, alias) || !dup_or_null(&out->team_id, team_id) ||
      !dup_or_null(&out->location, *location ? location : NULL))
    host_fail(r, HOST_FAILED, "out of memory");
  else if (host_store_generate_at(k->db, out->key_id, hash, alias, team_id, location,
                                  out->secret_name, out->key, r) == HOST_OK) {
    out->queued = store;
    return HOST_OK;
  }
  host_key_change_clear(out);
  return r->status;
}

/* Take the row's fields into `out` (the row gives them up). */
static void adopt_row(host_key_change *out, host_key_row *row) {
  memcpy(out->key_id, row->key_id, sizeof out->key_id);
  out->alias = row->alias;
  out->secret_name = row->secret_name;
  out->team_id = row->team_id;
  row->alias = row->secret_name = row->team_id = NULL;
  if (row->location && *row->location) {
    out->location = row->location;
    row->location = NULL;
  }
  host_key_row_free(row);
}

host_status host_key_delete(host_key_ctx *k, const char *alias, const char *key,
                            host_key_change *out, host_result *r) {
  memset(out, 0, sizeof *out);
  host_key_row row;
  if (find(k, alias, key, &row, r) != HOST_OK) return r->status;
  if ((row.secret_name && k->plugin && (check_store(k, 0, 1, r) != HOST_OK ||
                                        host_location_supported(k->plugin, row.location, r) !=
                                            HOST_OK)) ||
      host_store_delete(k->db, &row, r) != HOST_OK) {
    host_key_row_free(&row);
    return r->status;
  }
  out->queued = row.secret_name != NULL;
  adopt_row(out, &row);
  return HOST_OK;
}

host_status host_key_regenerate(host_key_ctx *k, const char *alias, const char *key,
                                host_key_change *out, host_result *r) {
  memset(out, 0, sizeof *out);
  host_key_row row;
  if (find(k, alias, key, &row, r) != HOST_OK) return r->status;
  int store = k->cfg->store_virtual_keys;
  char hash[65];
  char *name = NULL;
  if ((store || (row.secret_name && k->plugin)) &&
      (check_store(k, store, row.secret_name != NULL, r) != HOST_OK ||
       host_location_supported(k->plugin, row.location, r) != HOST_OK))
    goto fail;
  if (new_key(out, hash, r) != HOST_OK) goto fail;
  if (store && !(name = host_key_secret_name(k->cfg->prefix, row.alias, row.key_id))) {
    host_fail(r, HOST_FAILED, "out of memory");
    goto fail;
  }
  int drop_old = row.secret_name && (!name || strcmp(name, row.secret_name) != 0);
  if (host_store_regenerate(k->db, &row, hash, name, out->key, drop_old, r) != HOST_OK) goto fail;
  out->queued = name || drop_old;
  char *old = row.secret_name;
  row.secret_name = name;
  adopt_row(out, &row);
  out->removed_secret = drop_old ? old : NULL;
  if (!drop_old) free(old);
  return HOST_OK;
fail:
  free(name);
  host_key_row_free(&row);
  host_key_change_clear(out);
  return r->status;
}

host_status host_key_update_alias(host_key_ctx *k, const char *key, const char *alias,
                                  host_key_change *out, host_result *r) {
  memset(out, 0, sizeof *out);
  if (alias && !host_alias_valid(alias))
    return host_fail(r, HOST_USAGE, "alias '%s' is not valid: 1 to %d characters, '/'-separated "
                     "segments of letters, digits, '.', '_' and '-', each starting with a letter "
                     "or digit (it becomes a secret name)", alias, HOST_ALIAS_MAX);
  host_key_row row;
  if (find(k, NULL, key, &row, r) != HOST_OK) return r->status;
  int store = k->cfg->store_virtual_keys;
  char *name = NULL, *new_alias = NULL;
  if ((store || (row.secret_name && k->plugin)) &&
      (check_store(k, store, row.secret_name != NULL, r) != HOST_OK ||
       host_location_supported(k->plugin, row.location, r) != HOST_OK))
    goto fail;
  if ((store && !(name = host_key_secret_name(k->cfg->prefix, alias, row.key_id))) ||
      !dup_or_null(&new_alias, alias)) {
    host_fail(r, HOST_FAILED, "out of memory");
    goto fail;
  }
  if (host_store_rename(k->db, &row, alias, name, key, r) != HOST_OK) goto fail;
  int drop_old = row.secret_name && (!name || strcmp(name, row.secret_name) != 0);
  out->queued = name || drop_old;
  char *old = row.secret_name;
  free(row.alias);
  row.alias = new_alias;
  row.secret_name = name;
  adopt_row(out, &row);
  out->removed_secret = drop_old ? old : NULL;
  if (!drop_old) free(old);
  return HOST_OK;
fail:
  free(name);
  free(new_alias);
  host_key_row_free(&row);
  return r->status;
}

/* A key for a team: written where the team's settings say (teams.c keeps
 * the location text), refused when the plugin cannot write there. */
host_status host_key_generate_team(host_key_ctx *k, const char *alias, const char *given,
                                   const char *team_id, host_key_change *out, host_result *r) {
  if (!team_id) return host_key_generate_given(k, alias, given, out, r);
  memset(out, 0, sizeof *out);
  if (!host_team_id_valid(team_id))
    return host_fail(r, HOST_USAGE, "team id '%s' is not valid: 1 to %d letters, digits, '.', "
                     "'_' or '-', starting with a letter or digit", team_id, HOST_TEAM_ID_MAX);
  host_team_row t;
  if (host_store_team_get(k->db, team_id, &t, r) != HOST_OK) return r->status;
  host_status s = k->cfg->store_virtual_keys ? host_location_supported(k->plugin, t.location, r)
                                             : HOST_OK;
  if (s == HOST_OK) s = host_key_generate_at(k, alias, given, team_id, t.location, out, r);
  host_team_row_free(&t);
  return s;
}
