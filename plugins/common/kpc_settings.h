/*
 * kpc_settings.h -- one settings-table mechanism for every backend plugin:
 * a plugin describes each knob it reads from the environment and/or from
 * `key_management_settings` as a row (names, kind, field, default, range,
 * what is allowed), and this module applies the table to the plugin's
 * config struct with one parser per kind and one wording of errors:
 *   "setting 'max_retries' must be a whole number between 0 and 100 (got 'x')"
 *   "VAULT_SKIP_VERIFY must be true or false (got 'maybe')"
 * The value is echoed (at most 60 bytes; kms_error_set turns control
 * characters into '?', so the message stays one line) unless the row is
 * secret: then "(not shown)".
 *
 * Precedence is the caller's order of calls: kpc_settings_defaults(), then
 * kpc_settings_apply_env() (for each row, the first of its variables that is
 * set and not blank), then kpc_settings_apply() (the settings, in the order
 * given: a later one wins) -- so a setting wins over a variable.
 *
 * Booleans come in two dialects, chosen per row, because the plugins follow
 * their ecosystems: KPC_BOOL_GO is Go's strconv.ParseBool (Vault's
 * VAULT_SKIP_VERIFY and the Vault plugin's settings: 1 t T TRUE true True and
 * 0 f F FALSE false False), KPC_BOOL_YAML is YAML/botocore's words in any case
 * (true yes on 1 / false no off 0).
 *
 * Also here, shared by every plugin's config code: reading the environment
 * through host->getenv (kpc_env_get, kpc_env_first) and kpc_dup_trim.
 *
 * Thread-safety: every function only reads its inputs and writes the cfg
 * and err it is given; call from create() (cfg not yet shared).
 */
#ifndef KPC_SETTINGS_H
#define KPC_SETTINGS_H

#include "kms_plugin.h"
#include "kpc_log.h"

#include <stddef.h>
#include <stdint.h>

/* A NULL-terminated list of names or choices (a compound literal: static
 * storage at file scope). */
#define KPC_NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})

typedef enum kpc_setting_kind {
  KPC_SET_INT,      /* whole number in [lo, hi] */
  KPC_SET_DURATION, /* seconds or Go duration ("1h2m", "500ms"): ms in [lo, hi]; stored ms/div */
  KPC_SET_BOOL,     /* per `dialect`; stored 0/1 */
  KPC_SET_ENUM,     /* one of `choices` (exact): stored its index */
  KPC_SET_STRING,   /* trimmed text into a char * field (blank: unset); `check` if set */
  KPC_SET_CUSTOM,   /* `set` parses and stores the trimmed value */
  KPC_SET_REFUSED,  /* known but not supported: a non-blank value is KMS_UNSUPPORTED */
  KPC_SET_IGNORED   /* accepted and not ours (e.g. host-level LiteLLM keys) */
} kpc_setting_kind;

/* The C type of the field a number lands in (KPC_F_STR: char *). */
typedef enum kpc_field_type {
  KPC_F_NONE = 0,
  KPC_F_I64,
  KPC_F_INT,
  KPC_F_SIZE,
  KPC_F_UINT,
  KPC_F_STR
} kpc_field_type;

typedef enum kpc_bool_dialect { KPC_BOOL_GO = 0, KPC_BOOL_YAML } kpc_bool_dialect;

typedef struct kpc_setting_row kpc_setting_row;

/* A KPC_SET_CUSTOM row's parser. `label` is "setting 'key'" or the variable
 * name (for messages); `value` is trimmed. Return KMS_OK or fill err (see
 * kpc_settings_bad). */
typedef kms_status (*kpc_setting_set)(void *cfg, const kpc_setting_row *r, const char *label,
                                      const char *value, kms_error *err);

struct kpc_setting_row {
  const char *key;        /* key_management_settings key, or NULL (environment only) */
  const char *const *env; /* variables, first set and not blank wins; NULL: setting only */
  kpc_setting_kind kind;
  size_t off;             /* offsetof(config, field) */
  kpc_field_type type;    /* KPC_F_NONE: no field (CUSTOM, REFUSED, IGNORED) */
  int64_t def;            /* numeric kinds: the default, in stored units */
  int64_t lo, hi;         /* INT: the range; DURATION: the range in ms */
  int64_t div;            /* DURATION: stored = ms / div (0 counts as 1) */
  kpc_bool_dialect dialect;
  const char *const *choices;    /* ENUM */
  int (*check)(const char *s);   /* STRING: 1 if acceptable (NULL: anything) */
  kpc_setting_set set;           /* CUSTOM */
  const char *what;       /* "must be <what>"; REFUSED: why. NULL for BOOL/ENUM: generated */
  int secret;             /* never echo the value */
};

/* `.off` and `.type` of a row. */
#define KPC_FIELD(T, f, t) .off = offsetof(T, f), .type = (t)

/* Write every numeric row's `def` into its field. */
void kpc_settings_defaults(const kpc_setting_row *rows, size_t n, void *cfg);

/* Apply the environment variables of every row that has some (rows in
 * order). The first bad value stops with KMS_INVALID_ARGUMENT naming it. */
kms_status kpc_settings_apply_env(const kpc_setting_row *rows, size_t n, void *cfg,
                                  const kms_host *host, kms_error *err);

/* Apply `settings` (NULL keys skipped, NULL values read as ""). Unknown keys
 * are warned about on lg and ignored: LiteLLM's settings carry keys for other
 * backends. The name is echoed only when it looks like one ([a-z0-9_], at
 * most 64): a value pasted into the wrong place is never printed. */
kms_status kpc_settings_apply(const kpc_setting_row *rows, size_t n, void *cfg,
                              const kms_setting *settings, size_t n_settings,
                              const kpc_logger *lg, kms_error *err);

/* The standard refusal: "<label> must be <r->what> (got '<value>')", the
 * value not shown for a secret row. Returns
 * KMS_INVALID_ARGUMENT. For CUSTOM rows' parsers. */
kms_status kpc_settings_bad(kms_error *err, const kpc_setting_row *r, const char *label,
                            const char *value);

/* Parse a boolean in `d`: 0 and *out set, or -1. */
int kpc_parse_bool(kpc_bool_dialect d, const char *s, int *out);

/* The environment through host->getenv when the host provides one, else
 * the process environment. */
const char *kpc_env_get(const kms_host *host, const char *name);

/* The first of `names` (NULL-terminated) that is set and not blank; *which
 * (when which is not NULL) gets its name, or names[0] when none is set. */
const char *kpc_env_first(const kms_host *host, const char *const *names, const char **which);

/* A malloc'ed copy of s without leading and trailing white space; NULL when
 * out of memory. */
char *kpc_dup_trim(const char *s);

#endif
