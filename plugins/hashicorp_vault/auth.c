/*
 * auth.c -- the auth provider: static token, TLS-certificate login and
 * AppRole login, with the client token kept for its lease, renewed ahead of
 * expiry and replaced by a fresh login when renewal is impossible (see
 * auth.h for the seam and the rules).
 *
 * State machine (all under `mu`):
 *   no token ---login---> token(gen g, lease L, renewable?)
 *   at obtained + 2/3 L: one caller renews (POST auth/token/renew-self) while
 *     the others keep using the still-valid token; a failed renewal, a
 *     non-renewable token or a renewal capped by the max TTL -> fresh login;
 *   at obtained + L - margin the token is no longer handed out: callers wait
 *     for the login in flight (condvar), never start their own;
 *   a 403 with the current generation: Vault's "invalid token" (>= 1.16)
 *     or, without it, GET auth/token/lookup-self tells a dead token (-> one
 *     login, generation g+1, caller retries once) from a policy denial (->
 *     no login, the 403 stands); a static token is only probed (health),
 *     at most once a second;
 *   a failed login is remembered for VAULT_AUTH_RETRY_MS: callers in that
 *     window get the same error without a request, so bad credentials never
 *     turn into a login per request.
 * Network I/O and logging happen outside `mu`; `busy` marks the one thread
 * doing a login/renewal.
 */
#include "auth.h"

#include "common.h"
#include "kms_plugin_util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* After a failed login, how long callers get the same error without a new
 * attempt (and how long a failed renewal waits before the next try). */
#define VAULT_AUTH_RETRY_MS 1000

typedef enum { OP_LOGIN, OP_RENEW } auth_op;

struct vault_auth {
  const vault_config *cfg;
  const kpc_clock *clock; /* NULL: CLOCK_MONOTONIC */
  vault_http *http;
  const kpc_logger *lg;
  int login_based;       /* cert or AppRole (else static token) */
  const char *what;      /* "AppRole login" / "certificate login" (messages) */
  char *login_url, *renew_url, *lookup_url;
  char *login_path;      /* "/v1/auth/.../login" for messages */

  pthread_mutex_t mu;    /* guards everything below */
  pthread_cond_t cv;     /* signalled when `busy` clears */
  char *token;           /* current client token (wiped on free), NULL before login */
  uint64_t generation;   /* bumped for every new token; 0 = none yet */
  int valid;             /* token may be handed out (cleared when it is known dead) */
  int renewable;
  int next_is_login;     /* at renew_at: log in instead of renewing */
  int64_t lease_s;       /* lease granted by the last login (renew increment) */
  int64_t renew_at_ms;   /* monotonic; 0 = never (no lease) */
  int64_t expire_at_ms;  /* monotonic, margin included; 0 = never */
  int busy;              /* a login or renewal is in flight */
  uint64_t completed;    /* login/renewal operations finished (for waiters) */
  kms_error fail;        /* last login failure (status KMS_OK = none) */
  int failing;           /* logins/renewals failing: warn once per outage */
  int64_t fail_until_ms; /* callers before this get `fail` without a request */
  uint64_t logins, renewals; /* attempts, for health (atomic: no lock taken) */
  int64_t static_probe_ms;   /* static token: last lookup-self after a 403 (guarded by mu) */
};

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_ms(const vault_auth *a) { return kpc_clock_now(a->clock); }

/* A client token is sent as a header: printable ASCII without spaces, as
 * HCP_VAULT_TOKEN must be (a CR/LF would inject headers). */
static int token_ok(const char *t) {
  if (!*t) return 0;
  for (; *t; t++)
    if ((unsigned char)*t < 0x21 || (unsigned char)*t > 0x7e) return 0;
  return 1;
}

static char *concat3(const char *a, const char *b, const char *c) {
  size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s%s%s", a, b, c);
  return s;
}

/* Append `s` as a JSON string literal (with quotes) at *p. The caller sized
 * the buffer for 6 bytes per input byte + 2. */
static char *json_str(char *p, const char *s) {
  static const char hex[] = "0123456789abcdef";
  *p++ = '"';
  for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
    if (*q == '"' || *q == '\\') {
      *p++ = '\\';
      *p++ = (char)*q;
    } else if (*q < 0x20 || *q == 0x7f) {
      *p++ = '\\';
      *p++ = 'u';
      *p++ = '0';
      *p++ = '0';
      *p++ = hex[*q >> 4];
      *p++ = hex[*q & 15];
    } else {
      *p++ = (char)*q;
    }
  }
  *p++ = '"';
  return p;
}

/* The login request body (malloc'ed; holds the secret id: wipe_free it). */
static char *login_body(const vault_config *cfg) {
  if (cfg->auth_method == VAULT_AUTH_APPROLE) {
    size_t n = 6 * (strlen(cfg->approle_role_id) + strlen(cfg->approle_secret_id)) + 64;
    char *b = malloc(n), *p = b;
    if (!b) return NULL;
    p += sprintf(p, "{\"role_id\":");
    p = json_str(p, cfg->approle_role_id);
    p += sprintf(p, ",\"secret_id\":");
    p = json_str(p, cfg->approle_secret_id);
    *p++ = '}';
    *p = '\0';
    return b;
  }
  if (!cfg->cert_role) return strdup("{}");
  char *b = malloc(6 * strlen(cfg->cert_role) + 16), *p = b;
  if (!b) return NULL;
  p += sprintf(p, "{\"name\":");
  p = json_str(p, cfg->cert_role);
  *p++ = '}';
  *p = '\0';
  return b;
}

/* ---- talking to Vault (no lock held) ----------------------------------- */

typedef struct grant {
  char *token;      /* malloc'ed, wiped by grant_clear */
  int64_t lease_s;  /* auth.lease_duration */
  int renewable;
  int capped;       /* renewal: Vault capped the lease at the max TTL */
} grant;

static void grant_clear(grant *g) {
  kpc_wipe_free(g->token);
  memset(g, 0, sizeof *g);
}

/* Parse an `auth` block (login or renew-self answer): 1 = usable, 0 = no
 * auth block or token, -1 = a token that cannot be sent as a header. */
static int parse_auth(const char *body, size_t len, int want_token, grant *g) {
  cJSON *j = kpc_json_parse(body, len);
  cJSON *auth = cJSON_GetObjectItemCaseSensitive(j, "auth");
  cJSON *tok = cJSON_GetObjectItemCaseSensitive(auth, "client_token");
  cJSON *lease = cJSON_GetObjectItemCaseSensitive(auth, "lease_duration");
  cJSON *ren = cJSON_GetObjectItemCaseSensitive(auth, "renewable");
  cJSON *warn = cJSON_GetObjectItemCaseSensitive(j, "warnings");
  int ok = cJSON_IsObject(auth) && (!want_token || (cJSON_IsString(tok) && tok->valuestring[0]));
  if (ok && want_token && !token_ok(tok->valuestring)) ok = -1;
  if (ok == 1) {
    /* Capped at 100 years: a larger lease_duration (1e300) made the cast to
     * int64 undefined and lease_s * 1000 in schedule() overflow. */
    double d = cJSON_IsNumber(lease) ? lease->valuedouble : 0;
    const double max_s = 100.0 * 365 * 24 * 3600;
    g->lease_s = d > 0 ? (int64_t)(d < max_s ? d : max_s) : 0;
    g->renewable = cJSON_IsTrue(ren);
    if (want_token && !(g->token = strdup(tok->valuestring))) ok = 0;
    cJSON *w;
    cJSON_ArrayForEach(w, warn) {
      if (cJSON_IsString(w) && (strstr(w->valuestring, "max_ttl") || strstr(w->valuestring, "capped")))
        g->capped = 1;
    }
  }
  kpc_json_wipe_delete(j);
  return ok;
}

/* Statuses worth trying again later (http.c already retried them). */
static int transient(long s) { return s == 412 || s == 429 || s == 501 || (s >= 500 && s <= 599); }

/* POST the login. KMS_OK with g filled, or the failure in err. */
static kms_status do_login(vault_auth *a, int64_t deadline, grant *g, kms_error *err) {
  const vault_config *cfg = a->cfg;
  memset(g, 0, sizeof *g);
  __atomic_add_fetch(&a->logins, 1, __ATOMIC_RELAXED);
  char *body = login_body(cfg);
  if (!body) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  vault_http_request req = {a->what, "POST", a->login_url, NULL, cfg->login_namespace,
                            body, strlen(body), deadline, VAULT_CHECK_LOGIN};
  kpc_http_response resp;
  kms_status st = vault_http_perform(a->http, &req, &resp, err);
  kpc_wipe_free(body);
  if (st != KMS_OK) {
    kpc_http_response_clear(&resp);
    return st;
  }
  const char *hint = cfg->auth_method == VAULT_AUTH_APPROLE
                         ? "check HCP_VAULT_APPROLE_ROLE_ID/SECRET_ID and the AppRole role"
                         : "check HCP_VAULT_CLIENT_CERT, HCP_VAULT_CERT_ROLE and the cert role";
  char ns[80] = "";
  if (cfg->login_namespace) snprintf(ns, sizeof ns, " in namespace %.60s", cfg->login_namespace);
  if (resp.status == 200) {
    int ok = parse_auth(resp.body, resp.len, 1, g);
    if (ok == 0)
      st = kms_error_set(err, KMS_INTERNAL, 200,
                         "%s (POST %.60s%s): HTTP 200 without auth.client_token", a->what,
                         a->login_path, ns);
    else if (ok < 0)
      st = kms_error_set(err, KMS_INTERNAL, 200,
                         "%s (POST %.60s%s): Vault answered with a client_token holding "
                         "spaces or control characters; refused (it would be sent as a header)",
                         a->what, a->login_path, ns);
  } else {
    char etext[120];
    vault_errors_text(resp.body, resp.len, etext, sizeof etext);
    long s = resp.status;
    kms_status code = transient(s)              ? KMS_UNAVAILABLE
                      : (s >= 400 && s < 500) ? KMS_UNAUTHENTICATED
                                              : KMS_INTERNAL;
    st = kms_error_set(err, code, (int32_t)s, "%s (POST %.50s%s) failed: HTTP %ld%s%s (%s)",
                       a->what, a->login_path, ns, s, etext[0] ? ": " : "", etext,
                       code == KMS_UNAVAILABLE ? "Vault is unavailable; retry later" : hint);
  }
  kpc_http_response_clear(&resp);
  return st;
}

/* POST auth/token/renew-self. KMS_OK with g->lease_s / renewable / capped. */
static kms_status do_renew(vault_auth *a, const char *token, int64_t increment,
                           int64_t deadline, grant *g, kms_error *err) {
  memset(g, 0, sizeof *g);
  __atomic_add_fetch(&a->renewals, 1, __ATOMIC_RELAXED);
  char body[64];
  snprintf(body, sizeof body, "{\"increment\":%lld}", (long long)increment);
  vault_http_request req = {"token renewal", "POST", a->renew_url, token,
                            a->cfg->login_namespace, body, strlen(body), deadline,
                            VAULT_CHECK_TOKEN};
  kpc_http_response resp;
  kms_status st = vault_http_perform(a->http, &req, &resp, err);
  if (st == KMS_OK) {
    if (resp.status != 200 || parse_auth(resp.body, resp.len, 0, g) != 1) {
      char etext[120];
      vault_errors_text(resp.body, resp.len, etext, sizeof etext);
      st = kms_error_set(err, transient(resp.status) ? KMS_UNAVAILABLE : KMS_UNAUTHENTICATED,
                         (int32_t)resp.status,
                         "token renewal (POST /v1/auth/token/renew-self): HTTP %ld%s%s",
                         resp.status, etext[0] ? ": " : "", etext);
    } else if (g->lease_s < increment) {
      g->capped = 1;
    }
  }
  kpc_http_response_clear(&resp);
  return st;
}

/* GET auth/token/lookup-self: 1 = the token is alive, 0 = Vault refuses it,
 * -1 = could not tell (err says why: transport error, unexpected answer). */
static int do_lookup(vault_auth *a, const char *token, int64_t deadline, kms_error *err) {
  vault_http_request req = {"token lookup", "GET", a->lookup_url, token, a->cfg->login_namespace,
                            NULL, 0, deadline, VAULT_CHECK_TOKEN};
  kpc_http_response resp;
  int r = -1;
  if (vault_http_perform(a->http, &req, &resp, err) == KMS_OK) {
    r = resp.status == 200 ? 1 : (resp.status == 403 || resp.status == 401) ? 0 : -1;
    if (r < 0) {
      char etext[120];
      vault_errors_text(resp.body, resp.len, etext, sizeof etext);
      kms_error_set(err, transient(resp.status) ? KMS_UNAVAILABLE : KMS_INTERNAL,
                    (int32_t)resp.status, "token lookup (GET /v1/auth/token/lookup-self): HTTP "
                    "%ld%s%s", resp.status, etext[0] ? ": " : "", etext);
    }
  }
  kpc_http_response_clear(&resp);
  return r;
}

/* ---- state transitions (mu held) --------------------------------------- */

static void schedule(vault_auth *a, int64_t now, int64_t lease_s) {
  if (lease_s <= 0) {
    a->renew_at_ms = a->expire_at_ms = 0;
    return;
  }
  int64_t lease_ms = lease_s * 1000, margin = lease_ms / 10;
  if (margin > 10000) margin = 10000;
  a->renew_at_ms = now + lease_ms * 2 / 3;
  a->expire_at_ms = now + lease_ms - margin;
}

static void install(vault_auth *a, grant *g, int64_t now) {
  kpc_wipe_free(a->token);
  a->token = g->token;
  g->token = NULL;
  a->generation++;
  a->valid = 1;
  a->renewable = g->renewable;
  a->lease_s = g->lease_s;
  a->next_is_login = !g->renewable;
  schedule(a, now, g->lease_s);
  kms_error_clear(&a->fail);
  a->fail_until_ms = 0;
}

static int usable(const vault_auth *a, int64_t now) {
  return a->token && a->valid && (a->expire_at_ms == 0 || now < a->expire_at_ms);
}

static kms_status fail_copy(const vault_auth *a, kms_error *err) {
  if (err) *err = a->fail;
  return a->fail.status;
}

/* What one login/renewal operation did (run_op's steps share it). */
typedef struct op_outcome {
  kms_status st;
  kms_error e;
  grant g;
  int renewed, capped, unreachable;
  char renew_why[KMS_ERROR_MESSAGE_SIZE]; /* a refused renewal, before the login */
  int first_failure, recovered, still_usable;
} op_outcome;

/* Step 1 (no lock): talk to Vault. Renewal falls back to a login when it is
 * refused or capped; when Vault is unreachable a login would fail the same
 * way, so the token is kept and renewed again after the pause. */
static void op_talk(vault_auth *a, auth_op op, const char *old, int64_t increment,
                    int64_t deadline, op_outcome *o) {
  if (op == OP_LOGIN) {
    o->st = do_login(a, deadline, &o->g, &o->e);
    return;
  }
  o->st = do_renew(a, old, increment, deadline, &o->g, &o->e);
  if (o->st == KMS_OK && !o->g.capped) {
    o->renewed = 1;
    return;
  }
  if (o->st == KMS_UNAVAILABLE) {
    o->unreachable = 1;
    return;
  }
  o->capped = o->st == KMS_OK;
  if (o->capped) { /* keep the capped lease: the token stays usable if the login fails */
    pthread_mutex_lock(&a->mu);
    schedule(a, now_ms(a), o->g.lease_s);
    a->next_is_login = 1;
    pthread_mutex_unlock(&a->mu);
  } else {
    snprintf(o->renew_why, sizeof o->renew_why, "%s", o->e.message);
  }
  grant_clear(&o->g);
  kms_error_clear(&o->e);
  o->st = do_login(a, deadline, &o->g, &o->e);
}

/* Step 2 (takes mu once): install the result, clear busy, wake waiters. */
static void op_settle(vault_auth *a, op_outcome *o) {
  int64_t now = now_ms(a);
  pthread_mutex_lock(&a->mu);
  o->recovered = o->st == KMS_OK && a->failing;
  o->first_failure = o->st != KMS_OK && !a->failing;
  a->failing = o->st != KMS_OK;
  if (o->renewed) {
    schedule(a, now, o->g.lease_s);
    a->renewable = o->g.renewable;
    if (!o->g.renewable) a->next_is_login = 1;
  } else if (o->st == KMS_OK) {
    install(a, &o->g, now);
  } else {
    a->fail = o->e;
    a->fail_until_ms = now + VAULT_AUTH_RETRY_MS;
    /* a still-valid token keeps serving; try again after the pause */
    if (usable(a, now)) {
      int64_t next = now + VAULT_AUTH_RETRY_MS;
      a->renew_at_ms = a->expire_at_ms && next > a->expire_at_ms ? a->expire_at_ms : next;
      if (!o->unreachable) a->next_is_login = 1;
    }
  }
  o->still_usable = usable(a, now);
  a->busy = 0;
  a->completed++;
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

/* Step 3 (no lock): log. Never a token, never the secret id; the first
 * failure of an outage at WARN/ERROR, repeats at DEBUG. */
static void op_report(vault_auth *a, const op_outcome *o) {
  int64_t lease = o->g.lease_s;
  if (o->renew_why[0]) kpc_logf(a->lg, KMS_LOG_WARN, "%s; logging in again", o->renew_why);
  if (o->renewed)
    kpc_logf(a->lg, o->recovered ? KMS_LOG_INFO : KMS_LOG_DEBUG,
               "renewed the Vault token (lease %lld s)%s", (long long)lease,
               o->recovered ? " after earlier failures" : "");
  else if (o->st == KMS_OK)
    kpc_logf(a->lg, KMS_LOG_INFO, "%s succeeded (POST %s)%s; token lease %lld s%s", a->what,
               a->login_path, o->capped ? " after the token reached its max TTL"
                              : o->renew_why[0] ? " after renewal failed" : "",
               (long long)lease, lease ? "" : " (no expiry)");
  else
    kpc_logf(a->lg,
               !o->first_failure ? KMS_LOG_DEBUG : o->still_usable ? KMS_LOG_WARN : KMS_LOG_ERROR,
               "%s%s%s", o->e.message,
               o->still_usable ? "; the current token stays in use until it expires" : "",
               o->renew_why[0] ? " (renewal had failed too)" : "");
}

/*
 * One login or renewal, run by the thread that set busy = 1 (mu NOT held on
 * entry or exit). `old` is a copy of the token to renew (OP_RENEW; wiped and
 * freed here). Installs the result, clears busy, wakes the waiters, logs.
 */
static kms_status run_op(vault_auth *a, auth_op op, char *old, int64_t increment,
                         int64_t deadline, kms_error *err) {
  op_outcome o;
  memset(&o, 0, sizeof o);
  kms_error_clear(&o.e);
  op_talk(a, op, old, increment, deadline, &o);
  kpc_wipe_free(old);
  op_settle(a, &o);
  op_report(a, &o);
  grant_clear(&o.g);
  if (o.st != KMS_OK && err) *err = o.e;
  return o.st;
}

/* Wait (mu held) for the operation in flight, at most until `deadline`:
 * 1 if an operation completed while waiting, 0 if none did, -1 if the
 * deadline came first. The wait is in real time (pthread), computed from
 * the remaining budget on the plugin's clock. */
static int wait_busy(vault_auth *a, int64_t deadline) {
  uint64_t seen = a->completed;
  while (a->busy) {
    int64_t left = deadline - now_ms(a);
    if (left <= 0) return -1;
    struct timespec ts;
    kpc_timespec_in(left, &ts);
    pthread_cond_timedwait(&a->cv, &a->mu, &ts);
  }
  return a->completed != seen;
}

static kms_status wait_timeout(const vault_auth *a, kms_error *err) {
  return kms_error_set(err, KMS_UNAVAILABLE, 0,
                       "no Vault token within VAULT_CLIENT_TIMEOUT (%lld ms): the %s in "
                       "progress has not finished; Vault is slow or unreachable",
                       (long long)a->cfg->timeout_ms, a->what ? a->what : "login");
}

/* ---- public API --------------------------------------------------------- */

kms_status vault_auth_new(const vault_config *cfg, vault_http *http, const kpc_logger *lg,
                          const kpc_clock *clock, vault_auth **out, kms_error *err) {
  *out = NULL;
  if (cfg->auth_method == VAULT_AUTH_CERT && strncmp(cfg->addr, "https://", 8) != 0)
    return kms_error_set(err, KMS_INVALID_ARGUMENT, 0,
                         "certificate login (HCP_VAULT_CLIENT_CERT/KEY without a token) needs "
                         "an https:// HCP_VAULT_ADDR (Vault refuses it over plain HTTP); "
                         "the address is %.80s", cfg->addr);
  vault_auth *a = calloc(1, sizeof *a);
  if (!a) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  a->cfg = cfg;
  a->http = http;
  a->lg = lg;
  a->clock = clock;
  pthread_mutex_init(&a->mu, NULL);
  kpc_cond_init(&a->cv);
  int oom = 0;
  if (cfg->auth_method == VAULT_AUTH_TOKEN) {
    a->token = strdup(cfg->token);
    oom = !a->token;
    a->generation = 1;
    a->valid = 1;
  } else {
    a->login_based = 1;
    char *mount = NULL;
    if (cfg->auth_method == VAULT_AUTH_APPROLE) {
      a->what = "AppRole login";
      mount = vault_encode_path(cfg->approle_mount);
    } else {
      a->what = "certificate login";
      mount = strdup("cert");
    }
    if (mount) {
      a->login_path = concat3("/v1/auth/", mount, "/login");
      if (a->login_path) a->login_url = concat3(cfg->addr, a->login_path, "");
    }
    free(mount);
    a->renew_url = concat3(cfg->addr, "/v1/auth/token/renew-self", "");
    oom = !a->login_url || !a->renew_url;
  }
  a->lookup_url = concat3(cfg->addr, "/v1/auth/token/lookup-self", ""); /* every method */
  oom |= !a->lookup_url;
  if (oom) {
    vault_auth_free(a);
    return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  }
  *out = a;
  return KMS_OK;
}

void vault_auth_token_free(char *token) { kpc_wipe_free(token); }

void vault_auth_free(vault_auth *a) {
  if (!a) return;
  kpc_wipe_free(a->token);
  free(a->login_url);
  free(a->login_path);
  free(a->renew_url);
  free(a->lookup_url);
  pthread_cond_destroy(&a->cv);
  pthread_mutex_destroy(&a->mu);
  free(a);
}

/* A usable token exists (mu held): renew it first if this caller is the
 * one to do it. Returns 1 to look again, 0 to hand out the token. */
static int renew_if_due_locked(vault_auth *a, int64_t deadline) {
  int64_t now = now_ms(a);
  if (!a->login_based || a->busy || !a->renew_at_ms || now < a->renew_at_ms) return 0;
  /* this caller renews (or logs in again); the others keep using the
   * current token meanwhile */
  auth_op op = a->next_is_login ? OP_LOGIN : OP_RENEW;
  char *old = op == OP_RENEW ? strdup(a->token) : NULL;
  if (op == OP_RENEW && !old) return 0; /* out of memory: just use the token */
  int64_t inc = a->lease_s;
  a->busy = 1;
  pthread_mutex_unlock(&a->mu);
  run_op(a, op, old, inc, deadline, NULL); /* failures keep the current token */
  pthread_mutex_lock(&a->mu);
  return 1;
}

/* No usable token (mu held, still held on return unless the status says
 * otherwise): wait for the login in flight, repeat a recent failure, or
 * log in. KMS_OK: look again. */
static kms_status obtain_locked(vault_auth *a, int64_t deadline, kms_error *err) {
  if (a->busy) {
    int r = wait_busy(a, deadline);
    if (r < 0) return wait_timeout(a, err);
    if (r > 0 && !usable(a, now_ms(a)) && a->fail.status != KMS_OK)
      return fail_copy(a, err); /* the login we waited for failed */
    return KMS_OK;
  }
  if (a->fail.status != KMS_OK && now_ms(a) < a->fail_until_ms) return fail_copy(a, err);
  if (!a->login_based) /* a static token is never invalidated; defensive */
    return kms_error_set(err, KMS_INTERNAL, 0, "no token");
  a->busy = 1;
  pthread_mutex_unlock(&a->mu);
  kms_status st = run_op(a, OP_LOGIN, NULL, 0, deadline, err);
  pthread_mutex_lock(&a->mu);
  return st;
}

kms_status vault_auth_token(vault_auth *a, int64_t deadline, char **token, uint64_t *generation,
                            kms_error *err) {
  *token = NULL;
  *generation = 0;
  pthread_mutex_lock(&a->mu);
  for (;;) {
    if (usable(a, now_ms(a))) {
      if (renew_if_due_locked(a, deadline)) continue;
      break;
    }
    kms_status st = obtain_locked(a, deadline, err);
    if (st != KMS_OK) {
      pthread_mutex_unlock(&a->mu);
      return st;
    }
  }
  *token = strdup(a->token);
  *generation = a->generation;
  pthread_mutex_unlock(&a->mu);
  if (!*token) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
  return KMS_OK;
}

/* The token of generation `gen` is dead: have it replaced by one login,
 * however many callers report it (mu NOT held). */
static void replace_dead(vault_auth *a, uint64_t gen, int64_t deadline) {
  pthread_mutex_lock(&a->mu);
  if (gen == a->generation) {
    if (a->busy) {
      wait_busy(a, deadline); /* a login/renewal already in flight decides */
    } else {
      a->valid = 0; /* nobody gets this token again */
      a->busy = 1;
      pthread_mutex_unlock(&a->mu);
      run_op(a, OP_LOGIN, NULL, 0, deadline, NULL);
      return;
    }
  }
  pthread_mutex_unlock(&a->mu);
}

/* A static token got a 403 without "invalid token": a policy's denial or,
 * on a Vault before 1.16, perhaps a dead token. Nothing can replace it, but
 * health's `authenticated` should say which: lookup-self (recorded by
 * http.c) settles it, at most once a second so a path the policy denies
 * does not double the requests. Entered with mu held; returns with it
 * released. */
static void probe_static_unlocked(vault_auth *a, int64_t deadline) {
  int64_t now = now_ms(a);
  int due = !a->static_probe_ms || now - a->static_probe_ms >= 1000;
  if (due) a->static_probe_ms = now;
  pthread_mutex_unlock(&a->mu);
  if (!due) return;
  kms_error e;
  kms_error_clear(&e);
  (void)do_lookup(a, a->token, deadline, &e); /* a->token never changes */
}

int vault_auth_forbidden(vault_auth *a, uint64_t generation, int invalid_token,
                         int64_t deadline) {
  pthread_mutex_lock(&a->mu);
  if (!a->login_based && generation == a->generation && !invalid_token) {
    probe_static_unlocked(a, deadline);
    return 0; /* the 403 stands: a static token cannot be replaced */
  }
  if (!a->login_based || generation != a->generation) {
    /* a static token cannot be replaced; a newer token is worth one retry */
    int newer = generation != a->generation;
    pthread_mutex_unlock(&a->mu);
    return newer;
  }
  if (a->busy) {
    /* someone is logging in / renewing: their result decides */
    int r = wait_busy(a, deadline) >= 0 &&
            (generation != a->generation || !usable(a, now_ms(a)));
    pthread_mutex_unlock(&a->mu);
    return r;
  }
  char *probe = a->token && !invalid_token ? strdup(a->token) : NULL;
  pthread_mutex_unlock(&a->mu);
  if (!probe && !invalid_token) return 0;

  /* Dead token or policy denial? Vault >= 1.16 says "invalid token" for a
   * dead one; otherwise ask Vault about the token itself (the default
   * policy allows lookup-self), so that a path the policy denies does not
   * cost a login per request. */
  kms_error e;
  kms_error_clear(&e);
  int alive = invalid_token ? 0 : do_lookup(a, probe, deadline, &e);
  kpc_wipe_free(probe);
  if (alive != 0) return 0; /* alive: the 403 is the policy's; unknown: let it stand */
  replace_dead(a, generation, deadline);
  /* Retry once either way: with the new token, or (login failed) so that
   * the caller's vault_auth_token() reports the login error
   * (UNAUTHENTICATED with Vault's text) instead of a bare 403. */
  return 1;
}

int64_t vault_auth_renew_due_ms(vault_auth *a) {
  if (!a->login_based) return 0;
  pthread_mutex_lock(&a->mu);
  int64_t due = !a->busy && usable(a, now_ms(a)) ? a->renew_at_ms : 0;
  pthread_mutex_unlock(&a->mu);
  return due;
}

void vault_auth_health(vault_auth *a, uint64_t *logins, uint64_t *renewals, int64_t *ttl_s) {
  *logins = __atomic_load_n(&a->logins, __ATOMIC_RELAXED);
  *renewals = __atomic_load_n(&a->renewals, __ATOMIC_RELAXED);
  *ttl_s = -1;
  if (!a->login_based) return;
  pthread_mutex_lock(&a->mu);
  int64_t now = now_ms(a);
  if (a->token && a->valid && a->expire_at_ms) {
    int64_t left = a->expire_at_ms - now;
    *ttl_s = left > 0 ? left / 1000 : 0;
  } else if (!a->token || !a->valid) {
    *ttl_s = 0;
  }
  pthread_mutex_unlock(&a->mu);
}

/* refresh() with a static token: ask Vault whether it still accepts it. */
static kms_status check_static(vault_auth *a, int64_t deadline, kms_error *err) {
  kms_error e;
  kms_error_clear(&e);
  int alive = do_lookup(a, a->token, deadline, &e); /* a->token never changes */
  if (alive > 0) return KMS_OK;
  if (alive == 0)
    return kms_error_set(err, KMS_UNAUTHENTICATED, e.backend_status,
                         "refresh: Vault no longer accepts the token (GET "
                         "/v1/auth/token/lookup-self was refused): it expired or was revoked; "
                         "set a valid HCP_VAULT_TOKEN");
  if (err) *err = e;
  return e.status != KMS_OK ? e.status : KMS_UNAVAILABLE;
}

kms_status vault_auth_refresh(vault_auth *a, int64_t deadline, kms_error *err) {
  if (!a->login_based) return check_static(a, deadline, err);
  pthread_mutex_lock(&a->mu);
  if (a->busy) {
    /* the operation in flight is this refresh's answer */
    if (wait_busy(a, deadline) < 0) {
      pthread_mutex_unlock(&a->mu);
      return wait_timeout(a, err);
    }
  } else if (usable(a, now_ms(a)) && a->lease_s == 0) {
    /* a token without a lease cannot be renewed: check it is alive */
    char *probe = strdup(a->token);
    uint64_t gen = a->generation;
    pthread_mutex_unlock(&a->mu);
    if (!probe) return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
    kms_error e;
    kms_error_clear(&e);
    int alive = do_lookup(a, probe, deadline, &e);
    kpc_wipe_free(probe);
    if (alive == 0) replace_dead(a, gen, deadline);
    pthread_mutex_lock(&a->mu);
  } else {
    auth_op op = OP_LOGIN;
    char *old = NULL;
    if (usable(a, now_ms(a)) && a->renewable && !a->next_is_login) {
      op = OP_RENEW;
      if (!(old = strdup(a->token))) {
        pthread_mutex_unlock(&a->mu);
        return kms_error_set(err, KMS_NO_MEMORY, 0, "out of memory");
      }
    }
    int64_t inc = a->lease_s;
    a->busy = 1;
    pthread_mutex_unlock(&a->mu);
    run_op(a, op, old, inc, deadline, NULL);
    pthread_mutex_lock(&a->mu);
  }
  /* OK while a usable token exists (a failed renewal of a still-valid token
   * was logged as a warning); otherwise the login error. */
  kms_status st = KMS_OK;
  if (!usable(a, now_ms(a)))
    st = a->fail.status != KMS_OK ? fail_copy(a, err)
                                  : kms_error_set(err, KMS_UNAUTHENTICATED, 0,
                                                  "no valid Vault token after refresh");
  pthread_mutex_unlock(&a->mu);
  return st;
}
