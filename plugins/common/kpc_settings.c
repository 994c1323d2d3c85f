/*
 * kpc_settings.c -- the settings-table mechanism (see kpc_settings.h).
 */
#include "kpc_settings.h"

#include "kms_plugin_util.h"
#include "kpc_common.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *kpc_env_get(const kms_host *h, const char *name) {
  if (h && KMS_FIELD_PRESENT(h, kms_host, getenv) && h->getenv) return h->getenv(h->ctx, name);
  return getenv(name);
}

const char *kpc_env_first(const kms_host *h, const char *const *names, const char **which) {
  for (size_t i = 0; names[i]; i++) {
    const char *v = kpc_env_get(h, names[i]), *p = v;
    if (!v) continue;
    while (*p && isspace((unsigned char)*p)) p++;
    if (!*p) continue; /* blank counts as unset, as in the SDKs and LiteLLM */
    if (which) *which = names[i];
    return v;
  }
  if (which) *which = names[0];
  return NULL;
}

char *kpc_dup_trim(const char *s) {
  while (*s && isspace((unsigned char)*s)) s++;
  size_t n = strlen(s);
  while (n && isspace((unsigned char)s[n - 1])) n--;
  char *r = malloc(n + 1);
  if (!r) return NULL;
  memcpy(r, s, n);
  r[n] = '\0';
  return r;
}

int kpc_parse_bool(kpc_bool_dialect d, const char *s, int *out) {
  /* Go's strconv.ParseBool: exactly these spellings (case matters). */
  static const char *const go_t[] = {"1", "t", "T", "TRUE", "true", "True", NULL};
  static const char *const go_f[] = {"0", "f", "F", "FALSE", "false", "False", NULL};
  /* YAML 1.1 / botocore words, any case. */
  static const char *const y_t[] = {"true", "1", "yes", "on", NULL};
  static const char *const y_f[] = {"false", "0", "no", "off", NULL};
  const char *const *t = d == KPC_BOOL_GO ? go_t : y_t, *const *f = d == KPC_BOOL_GO ? go_f : y_f;
  int (*eq)(const char *, const char *) = d == KPC_BOOL_GO ? strcmp : strcasecmp;
  for (size_t i = 0; t[i]; i++) {
    if (eq(s, t[i]) == 0) return *out = 1, 0;
    if (eq(s, f[i]) == 0) return *out = 0, 0;
  }
  return -1;
}

/* "true or false" / "one of a, b, c" when the row gives no `what`. */
static const char *allowed(const kpc_setting_row *r, char *buf, size_t size) {
  if (r->what) return r->what;
  if (r->kind == KPC_SET_BOOL)
    return r->dialect == KPC_BOOL_GO ? "true or false (Go's spellings: 1, t, T, TRUE, true, True "
                                       "and 0, f, F, FALSE, false, False)"
                                     : "true or false (also yes/no, on/off, 1/0)";
  if (r->kind == KPC_SET_ENUM && r->choices) {
    size_t used = (size_t)snprintf(buf, size, "one of");
    for (size_t i = 0; r->choices[i] && used < size; i++)
      used += (size_t)snprintf(buf + used, size - used, "%s %s", i ? "," : "", r->choices[i]);
    return buf;
  }
  return "a valid value";
}

kms_status kpc_settings_bad(kms_error *err, const kpc_setting_row *r, const char *label,
                            const char *value) {
  char buf[256];
  int show = !r->secret; /* kms_error_set turns control characters into '?' */
  return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "%s must be %s (got %s%.60s%s)", label,
                       allowed(r, buf, sizeof buf), show ? "'" : "", show ? value : "(not shown)",
                       show ? "'" : "");
}

static void store(void *cfg, const kpc_setting_row *r, int64_t v) {
  void *f = (char *)cfg + r->off;
  switch (r->type) {
  case KPC_F_I64: *(int64_t *)f = v; break;
  case KPC_F_INT: *(int *)f = (int)v; break;
  case KPC_F_SIZE: *(size_t *)f = (size_t)v; break;
  case KPC_F_UINT: *(unsigned *)f = (unsigned)v; break;
  case KPC_F_NONE:
  case KPC_F_STR: break;
  }
}

void kpc_settings_defaults(const kpc_setting_row *rows, size_t n, void *cfg) {
  for (size_t i = 0; i < n; i++)
    if (rows[i].type != KPC_F_NONE && rows[i].type != KPC_F_STR) store(cfg, &rows[i], rows[i].def);
}

/* A numeric kind's trimmed value: 0 with *out set, -1 if it is bad. */
static int parse_number(const kpc_setting_row *r, const char *t, int64_t *out) {
  int64_t ms;
  int b;
  switch (r->kind) {
  case KPC_SET_INT: return kpc_parse_i64(t, r->lo, r->hi, out);
  case KPC_SET_DURATION:
    if (kpc_parse_duration_ms(t, &ms) != 0 || ms < r->lo || ms > r->hi) return -1;
    *out = ms / (r->div > 0 ? r->div : 1);
    return 0;
  case KPC_SET_BOOL:
    if (kpc_parse_bool(r->dialect, t, &b) != 0) return -1;
    return *out = b, 0;
  case KPC_SET_ENUM:
    for (int64_t i = 0; r->choices && r->choices[i]; i++)
      if (strcmp(t, r->choices[i]) == 0) return *out = i, 0;
    return -1;
  default: return -1;
  }
}

/* A string row: blank unsets; the field owns its copy (freed on replace). */
static kms_status apply_string(void *cfg, const kpc_setting_row *r, const char *label, char *t,
                               kms_error *err) {
  char **f = (char **)(void *)((char *)cfg + r->off);
  if (*t && r->check && !r->check(t)) return kpc_settings_bad(err, r, label, t);
  if (*f && r->secret) kms_wipe(*f, strlen(*f));
  free(*f);
  *f = NULL;
  if (*t && !(*f = strdup(t))) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  return KMS_OK;
}

/* Apply value v (untrimmed) to cfg per row r; label names its source. */
static kms_status apply_row(void *cfg, const kpc_setting_row *r, const char *label, const char *v,
                            kms_error *err) {
  if (r->kind == KPC_SET_IGNORED) return KMS_OK;
  char *t = kpc_dup_trim(v);
  if (!t) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  kms_status st = KMS_OK;
  int64_t num = 0;
  if (r->kind == KPC_SET_REFUSED) {
    if (*t) st = kms_error_set(err, KMS_UNSUPPORTED, 0, "%s %s", label, r->what);
  } else if (r->kind == KPC_SET_STRING) {
    st = apply_string(cfg, r, label, t, err);
  } else if (r->kind == KPC_SET_CUSTOM) {
    st = r->set(cfg, r, label, t, err);
  } else if (parse_number(r, t, &num) != 0) {
    st = kpc_settings_bad(err, r, label, v); /* as given: "y\r\n" shows as 'y??' */
  } else {
    store(cfg, r, num);
  }
  if (r->secret) kms_wipe(t, strlen(t));
  free(t);
  return st;
}

kms_status kpc_settings_apply_env(const kpc_setting_row *rows, size_t n, void *cfg,
                                  const kms_host *host, kms_error *err) {
  for (size_t i = 0; i < n; i++) {
    const char *which, *v;
    if (!rows[i].env || !(v = kpc_env_first(host, rows[i].env, &which))) continue;
    kms_status st = apply_row(cfg, &rows[i], which, v, err);
    if (st != KMS_OK) return st;
  }
  return KMS_OK;
}

static void warn_unknown(const kpc_logger *lg, const char *k) {
  int plain = strlen(k) <= 64;
  for (const char *p = k; plain && *p; p++)
    plain = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
  if (plain)
    kpc_logf(lg, KMS_LOG_WARN, "ignoring unknown setting '%s' (see the plugin README)", k);
  else
    kpc_logf(lg, KMS_LOG_WARN,
             "ignoring an unknown setting whose name is not [a-z0-9_] (name not shown)");
}

kms_status kpc_settings_apply(const kpc_setting_row *rows, size_t n, void *cfg,
                              const kms_setting *settings, size_t n_settings,
                              const kpc_logger *lg, kms_error *err) {
  for (size_t s = 0; s < n_settings; s++) {
    const char *k = settings[s].key, *v = settings[s].value ? settings[s].value : "";
    if (!k) continue;
    const kpc_setting_row *r = NULL;
    for (size_t i = 0; i < n && !r; i++)
      if (rows[i].key && strcmp(rows[i].key, k) == 0) r = &rows[i];
    if (!r) {
      warn_unknown(lg, k);
      continue;
    }
    char label[96];
    snprintf(label, sizeof label, "setting '%s'", k); /* keys are the table's: short */
    kms_status st = apply_row(cfg, r, label, v, err);
    if (st != KMS_OK) return st;
  }
  return KMS_OK;
}
