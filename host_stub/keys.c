/*
 * keys.c -- virtual keys: generate, delete, regenerate, list.
 *
 * A virtual key is "sk-" + base64url(24 bytes from OpenSSL's RAND_bytes)
 * (192 bits). Only its SHA-256 (hex) is kept, next to a random public key id,
 * the alias and the name it is stored under. With store_virtual_keys the
 * key change and the matching store operation (outbox.c) are committed in
 * one transaction, then delivered: create writes prefix + (alias or
 * "virtual-key-" + key id), delete removes it, regenerate writes the new
 * value and removes the old name when the name changed. The key is printed
 * once, by generate/regenerate, and never logged.
 */
#include "host.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>
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

int host_alias_valid(const char *a) {
  /* '/'-separated segments (LiteLLM stores tenant-a/gateway-key at
   * litellm/tenant-a/gateway-key), each [A-Za-z0-9][A-Za-z0-9._-]*: so no
   * empty, '.' or '..' segment and no control character. */
  size_t n = strlen(a);
  if (n == 0 || n > HOST_ALIAS_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = a[i];
    int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    int seg_start = i == 0 || a[i - 1] == '/';
    if (seg_start ? !alnum : !(alnum || c == '.' || c == '_' || c == '-' || c == '/')) return 0;
  }
  return a[n - 1] != '/';
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

typedef struct key_row {
  char key_id[HOST_KEY_ID_HEX + 1];
  char *alias;       /* or NULL */
  char *secret_name; /* or NULL */
} key_row;

static void row_free(key_row *r) {
  free(r->alias);
  free(r->secret_name);
  memset(r, 0, sizeof *r);
}

static char *col_dup(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t ? strdup((const char *)t) : NULL;
}

/* Find by alias or by key (hashed). 1 found, 0 not found, -1 error. */
static int find_row(sqlite3 *db, const char *alias, const char *key, key_row *r, char *err,
                    size_t errsz) {
  memset(r, 0, sizeof *r);
  char hash[65];
  sqlite3_stmt *st = NULL;
  const char *sql = alias ? "SELECT key_id, alias, secret_name FROM virtual_keys WHERE alias=?1"
                          : "SELECT key_id, alias, secret_name FROM virtual_keys WHERE token_hash=?1";
  if (!alias) {
    if (!host_key_format_valid(key)) {
      snprintf(err, errsz, "'--key' expects a virtual key (sk- followed by at least 22 "
               "base64url characters)");
      return -1;
    }
    if (host_key_hash(key, hash) != 0) {
      snprintf(err, errsz, "cannot hash the key (OpenSSL)");
      return -1;
    }
  }
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    snprintf(err, errsz, "database: %s", sqlite3_errmsg(db));
    return -1;
  }
  sqlite3_bind_text(st, 1, alias ? alias : hash, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  int found = 0;
  if (rc == SQLITE_ROW) {
    snprintf(r->key_id, sizeof r->key_id, "%s", (const char *)sqlite3_column_text(st, 0));
    r->alias = col_dup(st, 1);
    r->secret_name = col_dup(st, 2);
    found = 1;
  } else if (rc != SQLITE_DONE) {
    snprintf(err, errsz, "database: %s", sqlite3_errmsg(db));
    found = -1;
  }
  sqlite3_finalize(st);
  if (found == 0) {
    if (alias) snprintf(err, errsz, "no virtual key with alias '%s'", alias);
    else snprintf(err, errsz, "no such virtual key (it may have been deleted or regenerated)");
  }
  return found;
}

/* With store_virtual_keys, the plugin must be able to do what we will queue,
 * otherwise the work could never land: refuse before changing anything. */
static int check_store(host_key_ctx *k, int need_write, int need_delete, char *err,
                       size_t errsz) {
  const kms_plugin *p = k->plugin;
  if (!p) {
    snprintf(err, errsz, "store_virtual_keys is on but no plugin is loaded");
    return -1;
  }
  if (k->cfg->access_mode_implied)
    host_log(KMS_LOG_WARN, "store_virtual_keys is true and access_mode is not set: writing "
             "virtual keys, as LiteLLM does (its key hooks check only store_virtual_keys); set "
             "access_mode: read_and_write to say so");
  /* An explicit read_only stays an error: the config contradicts itself. */
  if (k->cfg->access_mode == HOST_ACCESS_READ_ONLY || k->cfg->access_mode == HOST_ACCESS_UNSET) {
    snprintf(err, errsz, "general_settings.key_management_settings: store_virtual_keys "
             "(writing or deleting virtual keys in the store) needs access_mode: write_only or "
             "read_and_write (it is read_only%s)",
             k->cfg->access_mode == HOST_ACCESS_UNSET ? ", the default" : "");
    return -1;
  }
  if ((need_write && !(p->capabilities & KMS_CAP_WRITE)) ||
      (need_delete && !(p->capabilities & KMS_CAP_DELETE))) {
    snprintf(err, errsz, "plugin '%s' cannot %s secrets, so it cannot store virtual keys; "
             "turn store_virtual_keys off or use a writable store", p->name,
             need_write ? "write" : "delete");
    return -1;
  }
  return 0;
}

static int begin(sqlite3 *db, char *err, size_t errsz) {
  return host_db_exec(db, "BEGIN IMMEDIATE", err, errsz);
}

static int commit_or_rollback(sqlite3 *db, int ok, char *err, size_t errsz) {
  if (ok) {
    if (host_db_exec(db, "COMMIT", err, errsz) == 0) return 0;
  }
  char e2[128];
  host_db_exec(db, "ROLLBACK", e2, sizeof e2);
  return -1;
}

/* After a commit: (test hook) then deliver everything queued. */
static int deliver(host_key_ctx *k, int queued_something) {
  host_crash_point();
  if (!queued_something && host_outbox_pending(k->db) == 0) return HOST_EXIT_OK;
  char err[HOST_ERR_SIZE];
  long left = host_outbox_replay(k->db, k->client, err, sizeof err);
  if (left == 0) return HOST_EXIT_OK;
  if (left < 0) {
    fprintf(stderr, "kms-host: error: the key change is saved, but the outbox could not be "
            "read: %s\n", err);
    return HOST_EXIT_FAIL;
  }
  fprintf(stderr,
          "kms-host: warning: the key change is saved, but %ld secret-manager operation(s) are "
          "still queued: %s\n"
          "kms-host: run `kms-host sync` once the secret manager is reachable (every later "
          "command retries too)\n", left, err);
  return HOST_EXIT_QUEUED;
}

static int step_done(sqlite3 *db, sqlite3_stmt *st, char *err, size_t errsz) {
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) {
    if (rc == SQLITE_CONSTRAINT)
      snprintf(err, errsz, "that alias is already used by another virtual key");
    else snprintf(err, errsz, "database: %s", sqlite3_errmsg(db));
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

int host_key_generate(host_key_ctx *k, const char *alias, char *err, size_t errsz) {
  if (alias && !host_alias_valid(alias)) {
    snprintf(err, errsz, "alias '%s' is not valid: 1 to %d characters, '/'-separated segments "
             "of letters, digits, '.', '_' and '-', each starting with a letter or digit (it "
             "becomes a secret name)", alias,
             HOST_ALIAS_MAX);
    return HOST_EXIT_USAGE;
  }
  int store = k->cfg->store_virtual_keys;
  if (store && check_store(k, 1, 0, err, errsz) != 0) return HOST_EXIT_CONFIG;
  char key[HOST_KEY_MAX], hash[65], key_id[HOST_KEY_ID_HEX + 1];
  if (host_key_new(key) != 0 || host_key_hash(key, hash) != 0 || host_key_id_new(key_id) != 0) {
    OPENSSL_cleanse(key, sizeof key);
    snprintf(err, errsz, "OpenSSL could not generate a key");
    return HOST_EXIT_FAIL;
  }
  char *name = store ? host_key_secret_name(k->cfg->prefix, alias, key_id) : NULL;
  if (store && !name) {
    OPENSSL_cleanse(key, sizeof key);
    snprintf(err, errsz, "out of memory");
    return HOST_EXIT_FAIL;
  }
  int ok = begin(k->db, err, errsz) == 0;
  if (ok) {
    sqlite3_stmt *st = NULL;
    ok = sqlite3_prepare_v2(k->db, "INSERT INTO virtual_keys(key_id, token_hash, alias, "
                            "secret_name) VALUES(?1, ?2, ?3, ?4)", -1, &st, NULL) == SQLITE_OK;
    if (ok) {
      sqlite3_bind_text(st, 1, key_id, -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(st, 2, hash, -1, SQLITE_TRANSIENT);
      if (alias) sqlite3_bind_text(st, 3, alias, -1, SQLITE_TRANSIENT);
      else sqlite3_bind_null(st, 3);
      if (name) sqlite3_bind_text(st, 4, name, -1, SQLITE_TRANSIENT);
      else sqlite3_bind_null(st, 4);
      ok = step_done(k->db, st, err, errsz) == 0;
    } else {
      snprintf(err, errsz, "database: %s", sqlite3_errmsg(k->db));
    }
    if (ok && store)
      ok = host_outbox_enqueue(k->db, HOST_OUTBOX_WRITE, name, key, strlen(key), err, errsz) == 0;
    if (commit_or_rollback(k->db, ok, err, errsz) != 0) ok = 0;
  }
  if (!ok) {
    OPENSSL_cleanse(key, sizeof key);
    free(name);
    return HOST_EXIT_FAIL;
  }
  /* The one place the key is shown: the caller needs it. */
  printf("key: %s\nkey_id: %s\nalias: %s\nsecret_name: %s\n", key, key_id, alias ? alias : "-",
         name ? name : "- (store_virtual_keys is off)");
  fflush(stdout);
  OPENSSL_cleanse(key, sizeof key);
  free(name);
  return deliver(k, store);
}

int host_key_delete(host_key_ctx *k, const char *alias, const char *key, char *err,
                    size_t errsz) {
  key_row r;
  int f = find_row(k->db, alias, key, &r, err, errsz);
  if (f <= 0) return HOST_EXIT_FAIL;
  if (r.secret_name && k->plugin && check_store(k, 0, 1, err, errsz) != 0) {
    row_free(&r);
    return HOST_EXIT_CONFIG;
  }
  int ok = begin(k->db, err, errsz) == 0;
  if (ok) {
    sqlite3_stmt *st = NULL;
    ok = sqlite3_prepare_v2(k->db, "DELETE FROM virtual_keys WHERE key_id=?1", -1, &st, NULL) ==
         SQLITE_OK;
    if (ok) {
      sqlite3_bind_text(st, 1, r.key_id, -1, SQLITE_TRANSIENT);
      ok = step_done(k->db, st, err, errsz) == 0;
    } else {
      snprintf(err, errsz, "database: %s", sqlite3_errmsg(k->db));
    }
    if (ok && r.secret_name)
      ok = host_outbox_enqueue(k->db, HOST_OUTBOX_DELETE, r.secret_name, NULL, 0, err, errsz) == 0;
    if (commit_or_rollback(k->db, ok, err, errsz) != 0) ok = 0;
  }
  if (!ok) {
    row_free(&r);
    return HOST_EXIT_FAIL;
  }
  printf("deleted: %s\nalias: %s\nsecret_name: %s\n", r.key_id, r.alias ? r.alias : "-",
         r.secret_name ? r.secret_name : "-");
  fflush(stdout);
  int queued = r.secret_name != NULL;
  row_free(&r);
  return deliver(k, queued);
}

int host_key_regenerate(host_key_ctx *k, const char *alias, const char *key, char *err,
                        size_t errsz) {
  key_row r;
  int f = find_row(k->db, alias, key, &r, err, errsz);
  if (f <= 0) return HOST_EXIT_FAIL;
  int store = k->cfg->store_virtual_keys;
  if ((store || (r.secret_name && k->plugin)) &&
      check_store(k, store, r.secret_name != NULL, err, errsz) != 0) {
    row_free(&r);
    return HOST_EXIT_CONFIG;
  }
  char nkey[HOST_KEY_MAX], hash[65];
  if (host_key_new(nkey) != 0 || host_key_hash(nkey, hash) != 0) {
    OPENSSL_cleanse(nkey, sizeof nkey);
    row_free(&r);
    snprintf(err, errsz, "OpenSSL could not generate a key");
    return HOST_EXIT_FAIL;
  }
  char *name = store ? host_key_secret_name(k->cfg->prefix, r.alias, r.key_id) : NULL;
  int ok = !store || name;
  if (!ok) snprintf(err, errsz, "out of memory");
  int drop_old = r.secret_name && (!name || strcmp(name, r.secret_name) != 0);
  if (ok) ok = begin(k->db, err, errsz) == 0;
  if (ok) {
    sqlite3_stmt *st = NULL;
    ok = sqlite3_prepare_v2(k->db, "UPDATE virtual_keys SET token_hash=?2, secret_name=?3, "
                            "updated_at=strftime('%Y-%m-%dT%H:%M:%SZ','now') WHERE key_id=?1",
                            -1, &st, NULL) == SQLITE_OK;
    if (ok) {
      sqlite3_bind_text(st, 1, r.key_id, -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(st, 2, hash, -1, SQLITE_TRANSIENT);
      if (name) sqlite3_bind_text(st, 3, name, -1, SQLITE_TRANSIENT);
      else sqlite3_bind_null(st, 3);
      ok = step_done(k->db, st, err, errsz) == 0;
    } else {
      snprintf(err, errsz, "database: %s", sqlite3_errmsg(k->db));
    }
    if (ok && name)
      ok = host_outbox_enqueue(k->db, HOST_OUTBOX_WRITE, name, nkey, strlen(nkey), err, errsz) == 0;
    if (ok && drop_old)
      ok = host_outbox_enqueue(k->db, HOST_OUTBOX_DELETE, r.secret_name, NULL, 0, err, errsz) == 0;
    if (commit_or_rollback(k->db, ok, err, errsz) != 0) ok = 0;
  }
  if (!ok) {
    OPENSSL_cleanse(nkey, sizeof nkey);
    free(name);
    row_free(&r);
    return HOST_EXIT_FAIL;
  }
  printf("key: %s\nkey_id: %s\nalias: %s\nsecret_name: %s\n", nkey, r.key_id,
         r.alias ? r.alias : "-", name ? name : "- (store_virtual_keys is off)");
  if (drop_old) printf("removed_secret: %s\n", r.secret_name);
  fflush(stdout);
  OPENSSL_cleanse(nkey, sizeof nkey);
  int queued = name || drop_old;
  free(name);
  row_free(&r);
  return deliver(k, queued);
}

int host_key_list(host_key_ctx *k, char *err, size_t errsz) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(k->db, "SELECT key_id, alias, secret_name, created_at, updated_at FROM "
                         "virtual_keys ORDER BY created_at, key_id", -1, &st, NULL) != SQLITE_OK) {
    snprintf(err, errsz, "database: %s", sqlite3_errmsg(k->db));
    return HOST_EXIT_FAIL;
  }
  printf("%-16s  %-20s  %-40s  %s\n", "KEY_ID", "ALIAS", "SECRET_NAME", "UPDATED");
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *a = (const char *)sqlite3_column_text(st, 1);
    const char *s = (const char *)sqlite3_column_text(st, 2);
    printf("%-16s  %-20s  %-40s  %s\n", (const char *)sqlite3_column_text(st, 0), a ? a : "-",
           s ? s : "-", (const char *)sqlite3_column_text(st, 4));
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    snprintf(err, errsz, "database: %s", sqlite3_errmsg(k->db));
    return HOST_EXIT_FAIL;
  }
  if (sqlite3_prepare_v2(k->db, "SELECT seq, op, secret_name, attempts, last_error FROM outbox "
                         "ORDER BY seq", -1, &st, NULL) != SQLITE_OK) {
    snprintf(err, errsz, "database: %s", sqlite3_errmsg(k->db));
    return HOST_EXIT_FAIL;
  }
  int n = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    if (!n++) printf("\nqueued secret-manager operations (run `kms-host sync`):\n");
    const char *le = (const char *)sqlite3_column_text(st, 4);
    printf("  #%lld %s %s (attempts: %d%s%s)\n", (long long)sqlite3_column_int64(st, 0),
           (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2),
           sqlite3_column_int(st, 3), le ? "; last error: " : "", le ? le : "");
  }
  sqlite3_finalize(st);
  return HOST_EXIT_OK;
}
