/*
 * kpc_proxy.c -- proxy choice per request: loopback never, NO_PROXY, then the
 * explicit or scheme proxy (see kpc_proxy.h for the rules).
 */
#include "kpc_proxy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int kpc_host_is_loopback(const char *host) {
  size_t n = strlen(host);
  if (strcasecmp(host, "localhost") == 0) return 1;
  if (n > 10 && strcasecmp(host + n - 10, ".localhost") == 0) return 1;
  unsigned char a[16];
  if (inet_pton(AF_INET, host, a) == 1) return a[0] == 127;
  if (inet_pton(AF_INET6, host, a) == 1) {
    static const unsigned char v6_loop[16] = {[15] = 1};
    static const unsigned char v4_mapped[12] = {[10] = 0xff, [11] = 0xff};
    return memcmp(a, v6_loop, 16) == 0 || (memcmp(a, v4_mapped, 12) == 0 && a[12] == 127);
  }
  return 0;
}

/* Does the IP `host` fall in `net`/`bits`? */
static int cidr_match(const char *host, const char *net, int bits) {
  unsigned char h[16], m[16];
  int fam = strchr(net, ':') ? AF_INET6 : AF_INET, len = fam == AF_INET6 ? 16 : 4;
  if (bits < 0 || bits > len * 8) return 0;
  if (inet_pton(fam, host, h) != 1 || inet_pton(fam, net, m) != 1) return 0;
  for (int i = 0; i < len && bits > 0; i++, bits -= 8) {
    unsigned char mask = (unsigned char)(bits >= 8 ? 0xff : 0xff << (8 - bits));
    if ((h[i] & mask) != (m[i] & mask)) return 0;
  }
  return 1;
}

/* One NO_PROXY entry (trimmed, lower case, NUL-terminated in a scratch
 * buffer) against host:port. */
static int entry_matches(char *e, const char *host, long port) {
  if (strcmp(e, "*") == 0) return 1;
  char *slash = strchr(e, '/');
  if (slash) { /* CIDR */
    *slash = '\0';
    char *end;
    long bits = strtol(slash + 1, &end, 10);
    return *end == '\0' && cidr_match(host, e[0] == '[' ? e + 1 : e, (int)bits);
  }
  long want_port = 0;
  char *colon = strrchr(e, ':');
  if (e[0] == '[') { /* [v6] or [v6]:port */
    char *rb = strchr(e, ']');
    if (!rb) return 0;
    *rb = '\0';
    if (rb[1] == ':') want_port = strtol(rb + 2, NULL, 10);
    e++;
  } else if (colon && strchr(e, ':') == colon) { /* host:port (one colon) */
    *colon = '\0';
    want_port = strtol(colon + 1, NULL, 10);
  }
  if (want_port && want_port != port) return 0;
  unsigned char ip[16];
  if (inet_pton(AF_INET, e, ip) == 1 || inet_pton(AF_INET6, e, ip) == 1)
    return strcasecmp(e, host) == 0;
  if (strncmp(e, "*.", 2) == 0) e++; /* "*.x" is ".x" */
  int subdomains_only = e[0] == '.';
  const char *dom = subdomains_only ? e + 1 : e;
  size_t hl = strlen(host), dl = strlen(dom);
  if (!dl) return 0;
  if (!subdomains_only && strcasecmp(host, dom) == 0) return 1;
  return hl > dl && host[hl - dl - 1] == '.' && strcasecmp(host + hl - dl, dom) == 0;
}

static int no_proxy_matches(const char *list, const char *host, long port) {
  if (!list) return 0;
  const char *p = list;
  while (*p) {
    const char *q = strchr(p, ',');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    char e[300];
    while (n && isspace((unsigned char)*p)) p++, n--;
    while (n && isspace((unsigned char)p[n - 1])) n--;
    if (n && n < sizeof e) {
      for (size_t i = 0; i < n; i++) e[i] = (char)tolower((unsigned char)p[i]);
      e[n] = '\0';
      if (entry_matches(e, host, port)) return 1;
    }
    if (!q) break;
    p = q + 1;
  }
  return 0;
}

const char *kpc_proxy_for(const kpc_proxy_config *cfg, const char *scheme, const char *host,
                          long port) {
  const char *proxy = cfg->proxy_explicit;
  if (!proxy) proxy = strcmp(scheme, "https") == 0 ? cfg->proxy_https : cfg->proxy_http;
  if (!proxy || kpc_host_is_loopback(host) || no_proxy_matches(cfg->no_proxy, host, port))
    return NULL;
  return proxy;
}
