/*
 * resolve.c -- LiteLLM's `os.environ/NAME` references and how they resolve.
 *
 * LiteLLM (proxy_server.py, load_config) replaces a litellm_params value v
 * when `isinstance(v, str) and v.startswith("os.environ/")` by
 * get_secret(v), which strips the marker with v.replace("os.environ/", "")
 * -- every occurrence -- and then reads the name through the configured
 * secret manager when one is set, access_mode is not write_only and
 * hosted_keys is unset or lists the name; otherwise from os.environ. Unlike
 * LiteLLM, an unresolvable reference is an error here, never None/"".
 */
#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENV_MARKER "os.environ/"

int host_env_ref_name(const char *value, char **name) {
  *name = NULL;
  size_t mlen = strlen(ENV_MARKER);
  if (strncmp(value, ENV_MARKER, mlen) != 0) return 0;
  char *out = malloc(strlen(value) + 1);
  if (!out) return -1;
  char *o = out;
  for (const char *s = value; *s;) {
    if (strncmp(s, ENV_MARKER, mlen) == 0) {
      s += mlen;
      continue;
    }
    *o++ = *s++;
  }
  *o = '\0';
  *name = out;
  return 1;
}

int host_ref_uses_plugin(const host_config *cfg, const char *name) {
  if (!cfg->kms) return 0;
  if (cfg->access_mode == HOST_ACCESS_WRITE_ONLY) return 0;
  if (!cfg->hosted_keys_set) return 1;
  for (size_t i = 0; i < cfg->n_hosted_keys; i++)
    if (!strcmp(cfg->hosted_keys[i], name)) return 1;
  return 0;
}

void host_redact(const char *value, size_t len, char *buf, size_t size) {
  if (len < 12) {
    snprintf(buf, size, "****** (%zu chars)", len);
    return;
  }
  char head[4];
  for (int i = 0; i < 3; i++) {
    unsigned char c = (unsigned char)value[i];
    head[i] = (c >= 0x21 && c < 0x7f) ? (char)c : '?';
  }
  head[3] = '\0';
  snprintf(buf, size, "%s... (%zu chars)", head, len);
}
