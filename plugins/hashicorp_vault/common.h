/*
 * common.h -- the Vault plugin's own small helpers (the generic ones --
 * clock, rng, wiping frees, JSON parse -- live in plugins/common/kpc_common.h,
 * included here): percent-encoding of KV/auth paths and the text of Vault's
 * `errors` array.
 *
 * Thread-safety: pure functions of their arguments.
 */
#ifndef VAULT_COMMON_H
#define VAULT_COMMON_H

#include "kpc_common.h"

#include <stddef.h>

/* Put once in front of every log line (the logger's prefix) and every error
 * message (plugin.c, on the way out of a slot); nothing else writes it. */
#define VAULT_MSG_PREFIX "hashicorp_vault: "

/* Percent-encode each '/'-separated segment of `s` (RFC 3986 unreserved
 * characters kept, everything else %XX). malloc'ed, or NULL on
 * out-of-memory. (KV paths and auth mount paths alike.) */
char *vault_encode_path(const char *s);
/* The same into `out`, which holds at least 3 * strlen(s) + 1 bytes (no
 * allocation: the buffer read builds its cache key on the stack). Returns
 * the encoded length. */
size_t vault_encode_path_to(const char *s, char *out);
/* vault_encode_path_to that also says, in *valid (may be NULL), whether
 * every '/'-separated segment is a valid name segment: not empty, not "."
 * or "..", no control character (kv2_encode_name: one pass for both). */
size_t vault_encode_check(const char *s, char *out, int *valid);

/* Vault's `errors` array (every Vault API answer may carry one) joined
 * with "; " into buf, one printable line (empty if none). */
void vault_errors_text(const char *body, size_t len, char *buf, size_t size);

/* 1 if one of the strings of Vault's "errors" array contains `text` (e.g.
 * "invalid token"), else 0 (not JSON, no such array). Thread-safe. */
int vault_errors_has(const char *body, size_t len, const char *text);

#endif
