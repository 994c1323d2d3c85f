/*
 * primary_watch.c -- per-field digests of the primary_secret_name document
 * and the diff of two versions of it (see primary_watch.h for why).
 */
#include "primary_watch.h"

#include "kms_plugin_util.h"
#include "sm.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PW_MAC 16 /* bytes of HMAC-SHA-256 kept per field */

typedef struct pw_field {
  char *name;
  unsigned char mac[PW_MAC];
  size_t order; /* position in the document: the last of duplicate keys wins */
} pw_field;

typedef struct pw_set {
  pw_field *v;
  size_t n, cap;
} pw_set;

struct primary_watch {
  pthread_mutex_t mu;
  unsigned char key[32];
  int seeded; /* a document has been seen (guarded by mu) */
  pw_set seen; /* sorted by name, one per name (guarded by mu) */
};

static void set_free(pw_set *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i].name);
  free(s->v);
  memset(s, 0, sizeof *s);
}

primary_watch *pw_new(void) {
  primary_watch *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  if (RAND_bytes(w->key, sizeof w->key) != 1 || pthread_mutex_init(&w->mu, NULL) != 0) {
    OPENSSL_cleanse(w->key, sizeof w->key);
    free(w);
    return NULL;
  }
  return w;
}

void pw_free(primary_watch *w) {
  if (!w) return;
  set_free(&w->seen);
  OPENSSL_cleanse(w->key, sizeof w->key);
  pthread_mutex_destroy(&w->mu);
  free(w);
}

/* ---- a document's fields ------------------------------------------------ */

typedef struct build_ctx {
  const unsigned char *key; /* NULL: names only (pw_all) */
  pw_set *set;
} build_ctx;

static kms_status add_field(void *ctx, const char *name, const char *value, size_t len,
                            kms_error *err) {
  build_ctx *b = ctx;
  pw_set *s = b->set;
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 16;
    pw_field *v = realloc(s->v, cap * sizeof *v);
    if (!v) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
    s->v = v, s->cap = cap;
  }
  pw_field *f = &s->v[s->n];
  memset(f, 0, sizeof *f);
  f->order = s->n;
  if (!(f->name = strdup(name))) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  s->n++;
  if (b->key) {
    /* a value that is not a string: a fixed digest no string can have
     * (the marker byte is not UTF-8), so becoming one is a change */
    static const unsigned char not_string = 0xff;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const unsigned char *data = value ? (const unsigned char *)value : &not_string;
    if (!HMAC(EVP_sha256(), b->key, 32, data, value ? len : 1, md, &mdlen) || mdlen < PW_MAC)
      return kms_error_set(err, KMS_INTERNAL, 0, "HMAC-SHA-256 failed");
    memcpy(f->mac, md, PW_MAC);
    OPENSSL_cleanse(md, sizeof md);
  }
  return KMS_OK;
}

static int by_name_then_order(const void *a, const void *b) {
  const pw_field *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c) return c;
  return x->order < y->order ? -1 : x->order > y->order;
}

/* The fields of `doc`, sorted by name, one per name (the last copy).
 * KMS_OK or an error (not an object, out of memory): then *s is empty. */
static kms_status build(const char *doc, size_t len, const unsigned char *key, pw_set *s) {
  memset(s, 0, sizeof *s);
  build_ctx b = {key, s};
  kms_error e;
  kms_status st = sm_field_each(doc, len, add_field, &b, &e);
  if (st != KMS_OK) {
    set_free(s);
    return st;
  }
  if (s->n) qsort(s->v, s->n, sizeof *s->v, by_name_then_order);
  size_t out = 0;
  for (size_t i = 0; i < s->n; i++) {
    if (i + 1 < s->n && strcmp(s->v[i].name, s->v[i + 1].name) == 0) {
      free(s->v[i].name); /* an earlier copy of the same key */
      continue;
    }
    s->v[out++] = s->v[i];
  }
  s->n = out;
  return KMS_OK;
}

/* ---- changes ------------------------------------------------------------ */

static int push(pw_changes *out, const char *name, uint32_t kind) {
  pw_change *v = realloc(out->v, (out->n + 1) * sizeof *v);
  if (!v) return -1;
  out->v = v;
  if (!(v[out->n].name = strdup(name))) return -1;
  v[out->n++].kind = kind;
  return 0;
}

/* old -> new: UPDATED for a field in both whose digest differs, DELETED for
 * a field only in old (both sorted by name). */
static void diff(const pw_set *old, const pw_set *new_, pw_changes *out) {
  size_t i = 0, j = 0;
  while (i < old->n) {
    int c = j < new_->n ? strcmp(old->v[i].name, new_->v[j].name) : -1;
    if (c > 0) {
      j++; /* new field: not a change */
    } else if (c < 0) {
      if (push(out, old->v[i].name, KMS_CHANGE_DELETED)) return;
      i++;
    } else {
      if (memcmp(old->v[i].mac, new_->v[j].mac, PW_MAC) != 0 &&
          push(out, old->v[i].name, KMS_CHANGE_UPDATED))
        return;
      i++, j++;
    }
  }
}

void pw_update(primary_watch *w, const char *doc, size_t len, int mode, pw_changes *out) {
  if (!w) return;
  if (mode == PW_SEED) { /* cheap when seeded: every read of the document comes here */
    pthread_mutex_lock(&w->mu);
    int seeded = w->seeded;
    pthread_mutex_unlock(&w->mu);
    if (seeded) return;
  }
  pw_set next = {0};
  if (doc && build(doc, len, w->key, &next) != KMS_OK) return; /* keep the last seen */
  pw_set old;
  pthread_mutex_lock(&w->mu);
  if (mode == PW_SEED && w->seeded) {
    pthread_mutex_unlock(&w->mu);
    set_free(&next);
    return;
  }
  if (mode == PW_DIFF && w->seeded && out) diff(&w->seen, &next, out);
  old = w->seen;
  w->seen = next;
  w->seeded = 1;
  pthread_mutex_unlock(&w->mu);
  set_free(&old);
}

void pw_all(const char *doc, size_t len, pw_changes *out) {
  pw_set s;
  if (build(doc, len, NULL, &s) != KMS_OK) return;
  for (size_t i = 0; i < s.n && !push(out, s.v[i].name, KMS_CHANGE_UPDATED); i++) {
  }
  set_free(&s);
}

void pw_changes_free(pw_changes *c) {
  for (size_t i = 0; i < c->n; i++) free(c->v[i].name);
  free(c->v);
  memset(c, 0, sizeof *c);
}
