/*
 * cmd_health.c -- `kms-host health`: is the secret manager usable right now,
 * and the plugin's statistics (ABI 1.1 kms_client_health).
 *
 * The health slot never contacts the backend: it reports what the instance
 * last observed. A CLI instance is seconds old and has observed nothing, so
 * the command first probes through the plugin's refresh slot (credentials
 * checked against the backend; Vault: lookup-self, renew or login) and then
 * reads the figures. Unhealthy = the probe failed, or the plugin says it is
 * unreachable or unauthenticated; "unknown" (-1) alone is not unhealthy (the
 * env plugin has no backend to reach).
 */
#include "hostcmds.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

host_status host_health_parse(int argc, char **argv, int *json, host_result *r) {
  *json = 0;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) *json = 1;
    else return host_fail(r, HOST_USAGE, "health: unexpected argument '%s'", argv[i]);
  }
  return HOST_OK;
}

/* Why the probe's status makes the instance unhealthy, in the words an
 * operator looks for. */
static const char *probe_meaning(kms_status st) {
  switch (st) {
  case KMS_UNAVAILABLE: return "the secret manager is unreachable";
  case KMS_UNAUTHENTICATED: return "not authenticated (the credential was refused)";
  case KMS_PERMISSION_DENIED: return "not authenticated (permission denied)";
  default: return "the probe failed";
  }
}

static void judge(host_health_report *rep) {
  rep->healthy = 0;
  if (rep->probe != KMS_OK && rep->probe != KMS_UNSUPPORTED)
    snprintf(rep->reason, sizeof rep->reason, "%s: %s (%s)", probe_meaning(rep->probe),
             rep->probe_msg, kms_status_str(rep->probe));
  else if (rep->h.reachable == 0)
    snprintf(rep->reason, sizeof rep->reason, "the plugin reports its backend unreachable%s%s",
             rep->h.last_error[0] ? "; last error: " : "", rep->h.last_error);
  else if (rep->h.authenticated == 0)
    snprintf(rep->reason, sizeof rep->reason, "the plugin reports it is not authenticated%s%s",
             rep->h.last_error[0] ? "; last error: " : "", rep->h.last_error);
  else
    rep->healthy = 1;
}

host_status host_health_check(kms_client *client, const char *plugin, const char *down,
                              host_health_report *rep, host_result *r) {
  memset(rep, 0, sizeof *rep);
  rep->plugin = plugin;
  if (!client) { /* create() said UNAVAILABLE: there is no instance to ask */
    rep->probe = KMS_UNAVAILABLE;
    snprintf(rep->probe_msg, sizeof rep->probe_msg, "%s", down ? down : "no instance");
    snprintf(rep->reason, sizeof rep->reason, "the secret manager is unreachable: %s",
             rep->probe_msg);
    return HOST_OK;
  }
  kms_error e;
  kms_error_clear(&e);
  rep->probe = kms_client_refresh(client, &e);
  if (rep->probe != KMS_OK) snprintf(rep->probe_msg, sizeof rep->probe_msg, "%s", e.message);
  rep->h.struct_size = sizeof rep->h;
  kms_status st = kms_client_health(client, &rep->h, &e);
  if (st == KMS_UNSUPPORTED)
    return host_fail(r, HOST_UNSUPPORTED, "plugin '%s' has no health slot (it was built "
                     "against ABI 1.0; health needs 1.1): rebuild it against kms_plugin.h 1.1, "
                     "or use `kms-host refresh` to check that it reaches its backend", plugin);
  if (st != KMS_OK)
    return host_fail(r, HOST_FAILED, "health: plugin '%s': %s (%s)", plugin, e.message,
                     kms_status_str(st));
  rep->have_health = 1;
  judge(rep);
  return HOST_OK;
}

static const char *tri(int32_t v) { return v > 0 ? "yes" : v == 0 ? "no" : "unknown"; }

/* A plugin's message made safe for a terminal (a plugin is not trusted to
 * keep control characters out). malloc'ed; NULL on out of memory. */
static char *safe_text(const char *s) { return host_text_escape(s, strlen(s)); }

static void print_errors(const kms_health *h, FILE *out) {
  int any = 0;
  fputs("errors:", out);
  for (int i = 0; i < KMS_HEALTH_STATUS_SLOTS; i++)
    if (h->errors_by_status[i]) {
      fprintf(out, "%s %s=%llu", any++ ? "," : "", kms_status_str((kms_status)i),
              (unsigned long long)h->errors_by_status[i]);
    }
  fputs(any ? "\n" : " none\n", out);
}

static void print_utc(int64_t t, char *buf, size_t size) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (!gmtime_r(&tt, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
    snprintf(buf, size, "%lld", (long long)t);
}

static host_status print_text(const host_health_report *rep, FILE *out, host_result *r) {
  char *reason = safe_text(rep->reason), *probe = safe_text(rep->probe_msg);
  char *last = safe_text(rep->have_health ? rep->h.last_error : "");
  host_status s = HOST_OK;
  if (!reason || !probe || !last) {
    s = host_fail(r, HOST_FAILED, "out of memory");
    goto done;
  }
  const kms_health *h = &rep->h;
  fprintf(out, "plugin: %s\nhealthy: %s%s%s\n", rep->plugin, rep->healthy ? "yes" : "no",
          rep->healthy ? "" : " -- ", reason);
  fprintf(out, "probe: %s%s%s\n", rep->probe == KMS_UNSUPPORTED ? "none (no refresh slot)"
                                  : kms_status_str(rep->probe),
          rep->probe_msg[0] ? ": " : "", probe);
  if (!rep->have_health) goto done;
  fprintf(out, "reachable: %s\nauthenticated: %s\n", tri(h->reachable), tri(h->authenticated));
  if (h->token_ttl_seconds < 0) fputs("token_ttl: does not expire (or no token)\n", out);
  else fprintf(out, "token_ttl: %lld s\n", (long long)h->token_ttl_seconds);
  fprintf(out, "cache_entries: %llu\nhits: %llu\nmisses: %llu\nnegative_hits: %llu\n"
          "stale_serves: %llu\nfetches: %llu\nlogins: %llu\nrenewals: %llu\n",
          (unsigned long long)h->cache_entries, (unsigned long long)h->hits,
          (unsigned long long)h->misses, (unsigned long long)h->negative_hits,
          (unsigned long long)h->stale_serves, (unsigned long long)h->fetches,
          (unsigned long long)h->logins, (unsigned long long)h->renewals);
  print_errors(h, out);
  if (h->last_error_status == KMS_OK) {
    fputs("last_error: none\n", out);
  } else {
    char when[32];
    print_utc(h->last_error_time, when, sizeof when);
    fprintf(out, "last_error: %s at %s: %s\n", kms_status_str(h->last_error_status), when, last);
  }
done:
  free(reason);
  free(probe);
  free(last);
  return s;
}

/* -1 ("unknown") is JSON null. */
static void add_tri(cJSON *o, const char *k, int32_t v) {
  if (v < 0) cJSON_AddNullToObject(o, k);
  else cJSON_AddBoolToObject(o, k, v > 0);
}

static void add_figures(cJSON *o, const kms_health *h) {
  add_tri(o, "reachable", h->reachable);
  add_tri(o, "authenticated", h->authenticated);
  if (h->token_ttl_seconds < 0) cJSON_AddNullToObject(o, "token_ttl_seconds");
  else cJSON_AddNumberToObject(o, "token_ttl_seconds", (double)h->token_ttl_seconds);
  static const struct { const char *k; size_t off; } n[] = {
    {"cache_entries", offsetof(kms_health, cache_entries)}, {"hits", offsetof(kms_health, hits)},
    {"misses", offsetof(kms_health, misses)},
    {"negative_hits", offsetof(kms_health, negative_hits)},
    {"stale_serves", offsetof(kms_health, stale_serves)},
    {"fetches", offsetof(kms_health, fetches)}, {"logins", offsetof(kms_health, logins)},
    {"renewals", offsetof(kms_health, renewals)}};
  for (size_t i = 0; i < sizeof n / sizeof *n; i++)
    cJSON_AddNumberToObject(o, n[i].k, (double)*(const uint64_t *)((const char *)h + n[i].off));
  cJSON *errs = cJSON_AddObjectToObject(o, "errors_by_status");
  for (int i = 0; errs && i < KMS_HEALTH_STATUS_SLOTS; i++)
    if (h->errors_by_status[i])
      cJSON_AddNumberToObject(errs, kms_status_str((kms_status)i), (double)h->errors_by_status[i]);
  if (h->last_error_status == KMS_OK) {
    cJSON_AddNullToObject(o, "last_error");
    return;
  }
  cJSON *le = cJSON_AddObjectToObject(o, "last_error");
  if (!le) return;
  cJSON_AddStringToObject(le, "status", kms_status_str(h->last_error_status));
  cJSON_AddStringToObject(le, "message", h->last_error);
  cJSON_AddNumberToObject(le, "time", (double)h->last_error_time);
}

static host_status print_json(const host_health_report *rep, FILE *out, host_result *r) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return host_fail(r, HOST_FAILED, "out of memory");
  cJSON_AddStringToObject(o, "plugin", rep->plugin);
  cJSON_AddBoolToObject(o, "healthy", rep->healthy);
  if (rep->healthy) cJSON_AddNullToObject(o, "reason");
  else cJSON_AddStringToObject(o, "reason", rep->reason);
  cJSON *p = cJSON_AddObjectToObject(o, "probe");
  if (p) {
    cJSON_AddStringToObject(p, "status", rep->probe == KMS_UNSUPPORTED ? "none"
                                         : kms_status_str(rep->probe));
    cJSON_AddStringToObject(p, "message", rep->probe_msg);
  }
  if (rep->have_health) add_figures(o, &rep->h);
  char *text = cJSON_PrintUnformatted(o); /* cJSON escapes control characters */
  cJSON_Delete(o);
  if (!text) return host_fail(r, HOST_FAILED, "out of memory");
  fprintf(out, "%s\n", text);
  cJSON_free(text);
  return HOST_OK;
}

host_status host_health_print(const host_health_report *rep, int json, FILE *out,
                              host_result *r) {
  host_status s = json ? print_json(rep, out, r) : print_text(rep, out, r);
  fflush(out);
  return s;
}
