/*
 * primary_watch.h -- which fields of the primary_secret_name document
 * changed. With primary_secret_name the cache holds one JSON secret and the
 * host reads its fields by name; when that secret gets a new version the
 * host must hear "OPENAI_API_KEY changed", not "litellm_secrets changed".
 * The plugin keeps, per field, a keyed digest of the value it last saw
 * (HMAC-SHA-256 under a random per-instance key, 128 bits kept), so it can
 * compare two versions of the document without keeping a second copy of
 * any secret, and a digest in a core dump cannot be brute-forced without
 * the key (wiped with the watch).
 *
 * A field is reported when its value changed (KMS_CHANGE_UPDATED) or it is
 * no longer in the document, or the document is gone (KMS_CHANGE_DELETED).
 * A field new in the document is not a change: as with a secret of its own,
 * the plugin reports changes to what it held, not arrivals. A document that
 * is not a JSON object leaves the last one seen in place (reads of it fail
 * until a valid one arrives, which is then compared with the last valid).
 *
 * Thread-safety: pw_new/pw_free from create/destroy only; every other
 * function from any thread (one internal mutex, never held while calling
 * out; it takes no other lock, so callers may hold theirs).
 */
#ifndef AWS_PRIMARY_WATCH_H
#define AWS_PRIMARY_WATCH_H

#include "kms_plugin.h"

#include <stddef.h>
#include <stdint.h>

typedef struct primary_watch primary_watch;

/* What changed: names (malloc'ed) and KMS_CHANGE_* kinds, for the caller to
 * notify once it holds no lock, then free with pw_changes_free. */
typedef struct pw_change {
  char *name;
  uint32_t kind;
} pw_change;

typedef struct pw_changes {
  pw_change *v;
  size_t n;
} pw_changes;

/* How pw_update treats `doc`. */
#define PW_SEED 0 /* a document read: becomes the one seen only if none was */
#define PW_DIFF 1 /* a new version: report what changed, then it is the one seen */
#define PW_OWN 2  /* the plugin's own write: the one seen, nothing reported */

/* NULL on out of memory or when no random key can be had. */
primary_watch *pw_new(void);
void pw_free(primary_watch *w);

/* Apply `doc` (NULL: the document is gone) as `mode` says; with PW_DIFF the
 * changes are appended to *out (zero it first). Out of memory: nothing is
 * reported and the last document seen is kept. */
void pw_update(primary_watch *w, const char *doc, size_t len, int mode, pw_changes *out);

/* Every field of `doc` as KMS_CHANGE_UPDATED (a never-blocking read's
 * document landed: every field is readable now). Does not touch the watch. */
void pw_all(const char *doc, size_t len, pw_changes *out);

void pw_changes_free(pw_changes *c);

#endif
