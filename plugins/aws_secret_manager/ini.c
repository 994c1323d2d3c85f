/*
 * ini.c -- the AWS shared `credentials`/`config` file parser and the safe
 * reading of the files the credential chain trusts (shared files, web
 * identity and container token files). See ini.h for the format.
 *
 * Everything here treats the bytes as hostile: lengths are bounded, NUL bytes
 * refused, no line is copied to a fixed buffer, and values (which may be
 * secret keys) are wiped before they are freed and never put in a message.
 */
#include "ini.h"

#include "kpc_common.h"

#include "kms_plugin_util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

/* [b, e) trimmed of whitespace on both ends. */
static void trim(const char **b, const char **e) {
  while (*b < *e && is_ws(**b)) (*b)++;
  while (*e > *b && is_ws((*e)[-1])) (*e)--;
}

/* The entry waiting for possible continuation lines before it is reported. */
typedef struct pending {
  char *section; /* owned */
  char *key;     /* owned, lower-case; "parent.sub" for nested */
  char *value;   /* owned, wiped */
  size_t vlen;
  char *parent;  /* key whose value was empty: indented lines are nested keys */
} pending;

static char *dup_range(const char *b, const char *e) {
  size_t n = (size_t)(e - b);
  char *s = malloc(n + 1);
  if (!s) return NULL;
  memcpy(s, b, n);
  s[n] = '\0';
  return s;
}

/* Report and drop the pending entry. 0, or 1 when the callback stopped. */
static int flush(pending *pd, aws_ini_fn cb, void *ctx) {
  int r = 0;
  if (pd->key && cb) r = cb(ctx, pd->section, pd->key, pd->value ? pd->value : "") != 0;
  free(pd->key);
  kpc_wipe_free(pd->value);
  pd->key = pd->value = NULL;
  pd->vlen = 0;
  return r;
}

/* Append "\n" + [b, e) to the pending value (a configparser continuation). */
static int append_value(pending *pd, const char *b, const char *e) {
  size_t add = (size_t)(e - b);
  char *v = malloc(pd->vlen + add + 2);
  if (!v) return -2;
  memcpy(v, pd->value, pd->vlen);
  v[pd->vlen] = '\n';
  memcpy(v + pd->vlen + 1, b, add);
  v[pd->vlen + 1 + add] = '\0';
  kpc_wipe_free(pd->value);
  pd->value = v;
  pd->vlen += add + 1;
  return 0;
}

/* A `[section]` line [b, e) (trimmed, starts with '['). */
static int section_line(pending *pd, const char *b, const char *e) {
  const char *close = e - 1;
  if (*close != ']') return -1;
  const char *nb = b + 1, *ne = close;
  trim(&nb, &ne);
  if (nb == ne) return -1;
  char *s = dup_range(nb, ne);
  if (!s) return -2;
  free(pd->section);
  pd->section = s;
  free(pd->parent);
  pd->parent = NULL;
  return 0;
}

/* A `key = value` line [b, e) (trimmed); indented: nested under pd->parent. */
static int key_line(pending *pd, const char *b, const char *e, int nested) {
  const char *sep = b;
  while (sep < e && *sep != '=' && *sep != ':') sep++;
  if (sep == e) return -1;
  const char *kb = b, *ke = sep, *vb = sep + 1, *ve = e;
  trim(&kb, &ke);
  trim(&vb, &ve);
  if (kb == ke || !pd->section) return -1;
  size_t plen = nested ? strlen(pd->parent) + 1 : 0, klen = (size_t)(ke - kb);
  char *k = malloc(plen + klen + 1);
  if (!k) return -2;
  if (nested) {
    memcpy(k, pd->parent, plen - 1);
    k[plen - 1] = '.';
  }
  for (size_t i = 0; i < klen; i++) k[plen + i] = (char)tolower((unsigned char)kb[i]);
  k[plen + klen] = '\0';
  char *v = dup_range(vb, ve);
  if (!v) {
    free(k);
    return -2;
  }
  pd->key = k;
  pd->value = v;
  pd->vlen = (size_t)(ve - vb);
  if (!nested) {
    free(pd->parent);
    pd->parent = NULL;
    if (pd->vlen == 0 && !(pd->parent = strdup(k))) return -2;
  }
  return 0;
}

/* One line [b, e) without its '\n'. 0, 1 (stopped), -1 (malformed), -2. */
static int one_line(pending *pd, const char *b, const char *e, aws_ini_fn cb, void *ctx) {
  int indented = b < e && is_ws(*b);
  trim(&b, &e);
  if (b == e || *b == '#' || *b == ';') return 0; /* blank or comment: no flush */
  if (indented && pd->parent) { /* nested sub-setting */
    if (flush(pd, cb, ctx)) return 1;
    return key_line(pd, b, e, 1);
  }
  if (indented && pd->key) return append_value(pd, b, e); /* continuation */
  if (flush(pd, cb, ctx)) return 1;
  if (*b == '[') return section_line(pd, b, e);
  return key_line(pd, b, e, 0);
}

int aws_ini_parse(const char *text, size_t len, aws_ini_fn cb, void *ctx, size_t *bad_line) {
  pending pd = {0};
  size_t line = 0;
  int r = 0;
  if (bad_line) *bad_line = 0;
  if (memchr(text, '\0', len)) {
    /* report the line of the first NUL */
    const char *z = memchr(text, '\0', len);
    for (const char *p = text; p < z; p++) line += *p == '\n';
    if (bad_line) *bad_line = line + 1;
    return -1;
  }
  const char *p = text, *end = text + len;
  while (p < end && r == 0) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    line++;
    r = one_line(&pd, p, le, cb, ctx);
    p = nl ? nl + 1 : end;
  }
  if (r == 0 && flush(&pd, cb, ctx)) r = 1;
  if (r == -1 && bad_line) *bad_line = line;
  flush(&pd, NULL, NULL); /* r != 0: drop without reporting */
  free(pd.section);
  free(pd.parent);
  return r;
}

/* ---- trusted files ---------------------------------------------------- */

/* Open `path` and check it the way kms-host checks plugin files: a regular
 * file owned by root or this user that neither group nor others can write
 * (anyone who can change it chooses which AWS account we act as). fstat on
 * the open descriptor: no window between check and read. Returns the fd, -1
 * with err set, or -2 when the file does not exist (*st unset). */
static int open_trusted(const char *path, const char *what, size_t max, struct stat *st,
                        kms_error *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return -2;
    kms_error_set(err, errno == EACCES ? KMS_PERMISSION_DENIED : KMS_INVALID_ARGUMENT, 0,
                  "%s %s cannot be opened: %s", what, path, strerror(errno));
    return -1;
  }
  const char *why = NULL;
  uid_t euid = geteuid();
  if (fstat(fd, st) != 0) why = "cannot be examined";
  else if (!S_ISREG(st->st_mode)) why = "is not a regular file";
  else if (st->st_uid != 0 && st->st_uid != euid) why = "is owned by another user (not root or this process's user)";
  else if (st->st_mode & (S_IWGRP | S_IWOTH)) why = "is writable by group or others";
  else if ((uintmax_t)st->st_size > max) why = "is too large";
  if (!why) return fd;
  close(fd);
  if (strstr(why, "large"))
    kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "%s %s is larger than %zu bytes; refusing it",
                  what, path, max);
  else
    kms_error_set(err, KMS_PERMISSION_DENIED, 0,
                  "%s %s (mode %04o, uid %u) %s; refusing to trust it: make it yours and "
                  "chmod go-w %s", what, path, (unsigned)(st->st_mode & 07777),
                  (unsigned)st->st_uid, why, path);
  return -1;
}

/* Read the whole trusted file into a malloc'ed buffer (NUL-terminated).
 * KMS_NOT_FOUND when it does not exist (err untouched). */
static kms_status slurp(const char *path, const char *what, size_t max, char **out, size_t *len,
                        kms_error *err) {
  struct stat st;
  *out = NULL;
  *len = 0;
  int fd = open_trusted(path, what, max, &st, err);
  if (fd == -2) return KMS_NOT_FOUND;
  if (fd < 0) return err->status;
  size_t cap = (size_t)st.st_size + 1, n = 0;
  char *buf = malloc(cap + 1);
  if (!buf) {
    close(fd);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  for (;;) { /* read until EOF: the size may have changed since fstat */
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      close(fd);
      kms_wipe(buf, n);
      free(buf);
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0, "%s %s cannot be read: %s", what, path,
                           strerror(e));
    }
    if (r == 0) break;
    n += (size_t)r;
    if (n == cap) { /* grew: refuse rather than chase it */
      close(fd);
      kms_wipe(buf, n);
      free(buf);
      return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                           "%s %s changed while it was read; try again", what, path);
    }
  }
  close(fd);
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return KMS_OK;
}

kms_status aws_read_secret_file(const char *path, const char *what, size_t max, char **out,
                                size_t *out_len, kms_error *err) {
  char *buf;
  size_t n;
  *out = NULL;
  *out_len = 0;
  kms_status st = slurp(path, what, max, &buf, &n, err);
  if (st == KMS_NOT_FOUND)
    return kms_error_set(err, KMS_UNAUTHENTICATED, 0, "%s %s does not exist", what, path);
  if (st != KMS_OK) return st;
  while (n && isspace((unsigned char)buf[n - 1])) buf[--n] = '\0';
  const char *bad = NULL;
  if (n == 0) bad = "is empty";
  else if (memchr(buf, '\0', n)) bad = "holds a NUL byte";
  else
    for (size_t i = 0; i < n && !bad; i++)
      if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) bad = "holds control characters";
  if (bad) {
    kms_wipe(buf, n);
    free(buf);
    return kms_error_set(err, KMS_UNAUTHENTICATED, 0, "%s %s %s", what, path, bad);
  }
  *out = buf;
  *out_len = n;
  return KMS_OK;
}

/* ---- profiles ------------------------------------------------------------ */

void aws_profile_clear(aws_profile *p) {
  if (!p) return;
  kpc_wipe_free(p->aws_access_key_id);
  kpc_wipe_free(p->aws_secret_access_key);
  kpc_wipe_free(p->aws_session_token);
  free(p->region);
  free(p->role_arn);
  free(p->web_identity_token_file);
  free(p->role_session_name);
  free(p->source_profile);
  free(p->credential_source);
  free(p->credential_process);
  free(p->sso_start_url);
  free(p->sso_session);
  memset(p, 0, sizeof *p);
}

/* The aws_profile fields by key. */
static char **profile_field(aws_profile *p, const char *key) {
  static const struct {
    const char *key;
    size_t off;
  } F[] = {
      {"aws_access_key_id", offsetof(aws_profile, aws_access_key_id)},
      {"aws_secret_access_key", offsetof(aws_profile, aws_secret_access_key)},
      {"aws_session_token", offsetof(aws_profile, aws_session_token)},
      {"region", offsetof(aws_profile, region)},
      {"role_arn", offsetof(aws_profile, role_arn)},
      {"web_identity_token_file", offsetof(aws_profile, web_identity_token_file)},
      {"role_session_name", offsetof(aws_profile, role_session_name)},
      {"source_profile", offsetof(aws_profile, source_profile)},
      {"credential_source", offsetof(aws_profile, credential_source)},
      {"credential_process", offsetof(aws_profile, credential_process)},
      {"sso_start_url", offsetof(aws_profile, sso_start_url)},
      {"sso_session", offsetof(aws_profile, sso_session)},
  };
  for (size_t i = 0; i < sizeof F / sizeof *F; i++)
    if (strcmp(F[i].key, key) == 0) return (char **)(void *)((char *)p + F[i].off);
  return NULL;
}

typedef struct profile_ctx {
  const char *name;
  int is_config;
  aws_profile *out;
  int oom;
} profile_ctx;

/* 1 if `section` is profile `name` in this kind of file. botocore: in the
 * config file `[profile NAME]` (any whitespace after "profile") and, for the
 * default profile, `[default]`. */
static int section_is(const char *section, const char *name, int is_config) {
  if (!is_config) return strcmp(section, name) == 0;
  if (strcmp(name, "default") == 0 && strcmp(section, "default") == 0) return 1;
  if (strncmp(section, "profile", 7) != 0 || !is_ws(section[7])) return 0;
  const char *s = section + 7;
  while (is_ws(*s)) s++;
  return strcmp(s, name) == 0;
}

static int profile_cb(void *vctx, const char *section, const char *key, const char *value) {
  profile_ctx *c = vctx;
  if (!section_is(section, c->name, c->is_config)) return 0;
  c->out->found = 1;
  char **f = profile_field(c->out, key);
  if (!f) return 0;
  char *v = strdup(value);
  if (!v) return c->oom = 1;
  kpc_wipe_free(*f); /* a repeated key: the last one counts */
  *f = v;
  return 0;
}

kms_status aws_profile_read(const char *path, const char *var, int is_config, const char *name,
                            aws_profile *p, kms_error *err) {
  char what[96];
  snprintf(what, sizeof what, "the shared %s file (%s)", is_config ? "config" : "credentials", var);
  char *buf;
  size_t len, bad = 0;
  kms_status st = slurp(path, what, AWS_INI_MAX_BYTES, &buf, &len, err);
  if (st == KMS_NOT_FOUND) return KMS_OK;
  if (st != KMS_OK) return st;
  aws_profile got = {0};
  profile_ctx c = {name, is_config, &got, 0};
  int r = aws_ini_parse(buf, len, profile_cb, &c, &bad);
  kms_wipe(buf, len);
  free(buf);
  if (r == -2 || c.oom) {
    aws_profile_clear(&got);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  if (r == -1) {
    aws_profile_clear(&got);
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "%s %s: line %zu is not a [section] or key = value line (or the file "
                         "holds a NUL byte); fix the file", what, path, bad);
  }
  /* Merge: what *p already has (an earlier, higher-priority file) wins. */
  p->found |= got.found;
  static const char *const keys[] = {"aws_access_key_id", "aws_secret_access_key",
                                     "aws_session_token", "region", "role_arn",
                                     "web_identity_token_file", "role_session_name",
                                     "source_profile", "credential_source",
                                     "credential_process", "sso_start_url", "sso_session"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    char **dst = profile_field(p, keys[i]), **src = profile_field(&got, keys[i]);
    if (!*dst && *src && **src) {
      *dst = *src;
      *src = NULL;
    }
  }
  aws_profile_clear(&got);
  return KMS_OK;
}
