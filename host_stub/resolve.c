/*
 * resolve.c -- LiteLLM's `os.environ/NAME` references and how they resolve.
 *
 * LiteLLM (ProxyConfig._check_for_os_environ_vars, run on the whole config)
 * replaces a string value v of any mapping when v.startswith("os.environ/")
 * by get_secret(v), which strips the marker with v.replace("os.environ/",
 * "") -- every occurrence -- and then reads the name through the configured
 * secret manager when one is set, access_mode is not write_only and
 * hosted_keys is unset or lists the name; otherwise from os.environ. When
 * the manager fails or has no value, get_secret logs an error and falls back
 * to os.environ. kms-host does the same (general_settings.kms_env_fallback
 * narrows or turns the fallback off), warning each time; unlike LiteLLM, a
 * reference that resolves to nothing or to an empty value is an error,
 * never None or "".
 */
#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENV_MARKER "os.environ/"

host_status host_env_ref_name(const char *value, char **name, host_result *r) {
  *name = NULL;
  size_t mlen = strlen(ENV_MARKER);
  if (strncmp(value, ENV_MARKER, mlen) != 0) return HOST_OK;
  char *out = malloc(strlen(value) + 1);
  if (!out) return host_fail(r, HOST_FAILED, "out of memory");
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
  return HOST_OK;
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

const char *host_env_lookup(const host_config *cfg, const char *name) {
  /* the last entry wins, as successive os.environ[...] = ... do */
  for (size_t i = cfg ? cfg->n_env_vars : 0; i > 0; i--)
    if (!strcmp(cfg->env_vars[i - 1].name, name)) return cfg->env_vars[i - 1].value;
  return getenv(name);
}

void host_resolved_clear(host_resolved *out) {
  if (out->value) {
    explicit_bzero(out->value, out->length);
    free(out->value);
  }
  memset(out, 0, sizeof *out);
}

static host_status take(host_resolved *out, const char *v, size_t n, const char *source,
                        host_result *r) {
  if (!(out->value = malloc(n + 1))) return host_fail(r, HOST_FAILED, "out of memory");
  memcpy(out->value, v, n);
  out->value[n] = '\0';
  out->length = n;
  snprintf(out->source, sizeof out->source, "%s", source);
  return HOST_OK;
}

/* From the environment; `why` prefixes the error (a failed plugin read). */
static host_status from_env(const host_config *cfg, const char *name, const char *why,
                            const char *source, host_resolved *out, host_result *r) {
  const char *v = host_env_lookup(cfg, name);
  if (v && *v) return take(out, v, strlen(v), source, r);
  return host_fail(r, HOST_FAILED, "%s%senvironment variable %s is %s", why ? why : "",
                   why ? "; and the " : "", name, v ? "set but empty" : "not set");
}

host_status host_resolve_ref(const host_config *cfg, const host_reader *reader,
                             const host_ref *ref, host_resolved *out, host_result *r) {
  memset(out, 0, sizeof *out);
  const char *name = ref->env_name;
  if (!name[0]) return host_fail(r, HOST_FAILED, "empty secret name after os.environ/");
  if (ref->at_load || !host_ref_uses_plugin(cfg, name))
    return from_env(cfg, name, NULL, ref->at_load ? "environment, at load" : "environment", out,
                    r);
  if (!reader) return host_fail(r, HOST_FAILED, "no plugin is loaded to read %s", name);
  kms_secret *s = NULL;
  kms_error e;
  memset(&e, 0, sizeof e);
  kms_status st = reader->read(reader->ctx, name, &s, &e);
  if (st == KMS_OK && s && s->length > 0) {
    host_status rc = take(out, s->value, s->length, reader->name, r);
    out->stale = KMS_SECRET_HAS(s, flags) && (s->flags & KMS_SECRET_STALE);
    reader->release(reader->ctx, s);
    return rc;
  }
  if (st == KMS_OK && s) reader->release(reader->ctx, s);
  char why[HOST_ERR_SIZE - 64];
  if (st == KMS_OK)
    snprintf(why, sizeof why, "via %s: the stored value is empty", reader->name);
  else
    snprintf(why, sizeof why, "via %s: %s (%s)", reader->name, e.message, kms_status_str(st));
  int no_value = st == KMS_OK || st == KMS_NOT_FOUND;
  if (cfg->fallback == HOST_FALLBACK_OFF ||
      (cfg->fallback == HOST_FALLBACK_NOT_FOUND && !no_value)) {
    return host_fail(r, HOST_FAILED, "%s [kms_env_fallback: %s]", why,
                     cfg->fallback == HOST_FALLBACK_OFF ? "off" : "not_found");
  }
  char source[96];
  snprintf(source, sizeof source, "environment, fallback from %s", reader->name);
  if (from_env(cfg, name, why, source, out, r) != HOST_OK) return r->status;
  if (reader->warn) {
    char msg[HOST_ERR_SIZE + 256];
    snprintf(msg, sizeof msg, "%s:%d %s: %s: %s; using environment variable %s instead "
             "(LiteLLM's fallback; general_settings.kms_env_fallback: off makes this an error)",
             cfg->path ? cfg->path : "config", ref->line, ref->path, ref->value, why, name);
    reader->warn(msg);
  }
  return HOST_OK;
}

host_status host_resolve_print(const host_config *cfg, const host_reader *reader, FILE *out,
                               host_result *res) {
  int failed = 0;
  const char *file = cfg->path ? cfg->path : "config";
  if (cfg->n_refs == 0) fprintf(out, "no os.environ/ references in %s\n", file);
  for (size_t i = 0; i < cfg->n_refs; i++) {
    const host_ref *r = &cfg->refs[i];
    char where[512];
    if (r->model_index != HOST_REF_NO_MODEL && !strncmp(r->path, "model_list[", 11) &&
        strstr(r->path, "].litellm_params.") && !strchr(strstr(r->path, "].litellm_params.") + 17, '.'))
      snprintf(where, sizeof where, "%s:%d model_list[%zu] (%s) %s", file, r->line,
               r->model_index, r->model_name[0] ? r->model_name : "-", r->param);
    else
      snprintf(where, sizeof where, "%s:%d %s", file, r->line, r->path);
    host_resolved v;
    host_result why = {HOST_OK, ""};
    if (host_resolve_ref(cfg, reader, r, &v, &why) != HOST_OK) {
      fprintf(out, "%s: %s -> ERROR: %s\n", where, r->value, why.msg);
      failed = 1;
    } else {
      char shown[96];
      host_redact(v.value, v.length, shown, sizeof shown);
      fprintf(out, "%s: %s -> %s [%s%s]\n", where, r->value, shown, v.source,
              v.stale ? ", stale" : "");
    }
    host_resolved_clear(&v);
  }
  fflush(out);
  if (failed)
    return host_fail(res, HOST_FAILED, "some os.environ/ references could not be resolved (each "
                     "is listed above with its error)");
  return HOST_OK;
}
