/*
 * ini.h -- the AWS shared `credentials` / `config` file format, parsed
 * carefully: these files are outside input (and ini.c is fuzzed by
 * tests/fuzz/fuzz_aws_ini.c).
 *
 * Format (botocore's raw_config_parse / configparser): `[section]` lines;
 * `key = value` or `key: value`; lines starting with '#' or ';' are
 * comments; keys are lower-cased, values trimmed; an indented line after a
 * `key =` with an empty value is a nested sub-setting (`s3 =\n  x = y`) and is
 * reported with the key "parent.sub" (the plugin ignores them). In the config
 * file a profile's section is `[profile NAME]` (`[default]` also accepted);
 * in the credentials file it is `[NAME]`.
 *
 * Thread-safety: every function is reentrant.
 */
#ifndef AWS_INI_H
#define AWS_INI_H

#include "kms_plugin.h"

#include <stddef.h>

#define AWS_INI_MAX_BYTES (1024 * 1024) /* larger shared files are refused */

/* Called for each key of each section, in file order. Return non-zero to
 * stop (aws_ini_parse then returns 1). */
typedef int (*aws_ini_fn)(void *ctx, const char *section, const char *key, const char *value);

/* Parse `len` bytes. 0: parsed; 1: stopped by cb; -1: malformed (line
 * number in *bad_line: a key before any section, a line with neither '=' nor
 * ':', an unterminated '[', a NUL byte, an empty key); -2: out of memory. */
int aws_ini_parse(const char *text, size_t len, aws_ini_fn cb, void *ctx, size_t *bad_line);

/* The keys of one profile. Strings are malloc'ed (secrets wiped on clear). */
typedef struct aws_profile {
  int found; /* a section for the profile exists */
  char *aws_access_key_id, *aws_secret_access_key, *aws_session_token;
  char *region;
  char *role_arn, *web_identity_token_file, *role_session_name;
  char *source_profile, *credential_source, *credential_process, *sso_start_url,
      *sso_session;
} aws_profile;

void aws_profile_clear(aws_profile *p);

/*
 * Read profile `name` from the file at `path` (is_config: `[profile NAME]`
 * sections, else `[NAME]`) into *p; keys already set in *p are kept (the
 * credentials file is read first and wins, as in botocore). A missing file
 * is not an error. A file that is not a regular file, is larger than
 * AWS_INI_MAX_BYTES, or that group/others can write or another user
 * (not root) owns is refused (KMS_PERMISSION_DENIED), as kms-host refuses
 * such plugin files; a malformed one is KMS_INVALID_ARGUMENT naming the file
 * and line. `var` names the variable that chose the path (for messages).
 */
kms_status aws_profile_read(const char *path, const char *var, int is_config, const char *name,
                            aws_profile *p, kms_error *err);

/*
 * Read a small secret file (a web identity or container authorization token)
 * at `path` into *out (malloc'ed, trailing whitespace removed, wiped by the
 * caller), with the same ownership/permission rule as above, at most
 * `max` bytes. `what` names it in messages.
 */
kms_status aws_read_secret_file(const char *path, const char *what, size_t max, char **out,
                                size_t *out_len, kms_error *err);

#endif
