"""ACL policies: HCL/JSON policy parsing, Vault's path-matching priority, capabilities.

Thread safety: Policy and ACL are immutable once built.
"""

import json
import re

CAPABILITIES = ("create", "read", "update", "delete", "list", "sudo", "deny",
                "patch", "subscribe")
_LEGACY_POLICY = {
    "deny": ["deny"],
    "read": ["read", "list"],
    "write": ["create", "read", "update", "delete", "list"],
    "sudo": ["create", "read", "update", "delete", "list", "sudo"],
}

DEFAULT_POLICY = '''# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to look up its resultant ACL from all policies
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Allow a token to renew a lease via lease_id in the request body
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Allow looking up lease properties
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

# Allow a token to look up the creation time and TTL of a given
# response-wrapping token
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

# Allow a token to unwrap a response-wrapping token
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# Allow general purpose tools
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}
'''

_HCL_TOKEN = re.compile(r'''
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<num>-?[0-9]+(?:\.[0-9]+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_\-.]*)
  | (?P<punct>[{}\[\]=,:])
''', re.S | re.X)


class PolicyParseError(Exception):
    pass


def _hcl_tokens(text):
    pos = 0
    toks = []
    while pos < len(text):
        m = _HCL_TOKEN.match(text, pos)
        if not m:
            line = text.count("\n", 0, pos) + 1
            raise PolicyParseError("At %d:%d: illegal char" % (line, pos - text.rfind("\n", 0, pos)))
        pos = m.end()
        kind = m.lastgroup
        if kind in ("ws", "comment"):
            continue
        val = m.group(kind)
        if kind == "str":
            val = json.loads(val)
        elif kind == "num":
            val = float(val) if "." in val else int(val)
        toks.append((kind, val))
    return toks


class _HCLParser:
    def __init__(self, toks):
        self.t = toks
        self.i = 0

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def take(self, kind=None, val=None):
        tok = self.peek()
        if tok[0] is None or (kind and tok[0] != kind) or (val is not None and tok[1] != val):
            raise PolicyParseError("unexpected token %r" % (tok[1],))
        self.i += 1
        return tok

    def body(self, closing):
        items = []
        while True:
            kind, val = self.peek()
            if kind is None:
                if closing:
                    raise PolicyParseError("unexpected end of input, expected '}'")
                return items
            if kind == "punct" and val == "}" and closing:
                self.i += 1
                return items
            if kind not in ("ident", "str"):
                raise PolicyParseError("unexpected token %r" % (val,))
            self.i += 1
            key = val
            labels = []
            while self.peek()[0] == "str":
                labels.append(self.take()[1])
            kind, val = self.peek()
            if kind == "punct" and val in ("=", ":"):
                self.i += 1
                items.append((key, labels, self.value()))
            elif kind == "punct" and val == "{":
                self.i += 1
                items.append((key, labels, self.body(True)))
            else:
                raise PolicyParseError("key '%s' expected start of object ('{') or assignment ('=')" % key)
            if self.peek() == ("punct", ","):
                self.i += 1

    def value(self):
        kind, val = self.peek()
        if kind in ("str", "num"):
            self.i += 1
            return val
        if kind == "ident" and val in ("true", "false"):
            self.i += 1
            return val == "true"
        if kind == "punct" and val == "[":
            self.i += 1
            out = []
            while True:
                if self.peek() == ("punct", "]"):
                    self.i += 1
                    return out
                out.append(self.value())
                if self.peek() == ("punct", ","):
                    self.i += 1
                elif self.peek() != ("punct", "]"):
                    raise PolicyParseError("expected ',' or ']' in list")
        if kind == "punct" and val == "{":
            self.i += 1
            return self.body(True)
        raise PolicyParseError("unexpected token %r" % (val,))


def _rule_caps(path, block):
    """block: dict-like list of (key, labels, value)."""
    caps = set()
    for key, _labels, value in block:
        if key == "capabilities":
            if not isinstance(value, list):
                raise PolicyParseError('path "%s": capabilities must be a list' % path)
            for c in value:
                c = str(c).lower()
                if c not in CAPABILITIES:
                    raise PolicyParseError('path "%s": invalid capability "%s"' % (path, c))
                caps.add(c)
        elif key == "policy":
            if value not in _LEGACY_POLICY:
                raise PolicyParseError('path "%s": invalid policy "%s"' % (path, value))
            caps.update(_LEGACY_POLICY[value])
    if "deny" in caps:
        caps = {"deny"}
    return caps


def parse_policy(text):
    """Returns {path_pattern: set(capabilities)}."""
    rules = {}
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except ValueError as e:
            raise PolicyParseError(str(e))
        paths = doc.get("path", {}) if isinstance(doc, dict) else {}
        if isinstance(paths, list):
            merged = {}
            for d in paths:
                merged.update(d)
            paths = merged
        for p, body in paths.items():
            if isinstance(body, list):
                body = body[0] if body else {}
            block = [(k, [], v) for k, v in body.items()]
            rules.setdefault(p, set()).update(_rule_caps(p, block))
    else:
        items = _HCLParser(_hcl_tokens(text)).body(False)
        for key, labels, value in items:
            if key != "path":
                continue
            if len(labels) != 1 or not isinstance(value, list):
                raise PolicyParseError("path: invalid path block")
            p = labels[0]
            rules.setdefault(p, set()).update(_rule_caps(p, value))
    for p in list(rules):
        if "deny" in rules[p]:
            rules[p] = {"deny"}
        if "*" in p[:-1]:
            raise PolicyParseError('path "%s": invalid use of "*"; only allowed at the end' % p)
    return rules


def _pattern_regex(p):
    glob = p.endswith("*")
    body = p[:-1] if glob else p
    rx = "/".join("[^/]+" if seg == "+" else re.escape(seg) for seg in body.split("/"))
    return re.compile("^" + rx + (".*" if glob else "") + "$", re.S)


def _pattern_priority(p):
    idxs = [i for i in (p.find("+"), p.find("*")) if i >= 0]
    first = min(idxs) if idxs else len(p)
    return (first, 0 if p.endswith("*") else 1, -p.split("/").count("+"), len(p), p)


class Policy:
    def __init__(self, name, text):
        self.name = name
        self.text = text
        self.rules = parse_policy(text)


class ACL:
    def __init__(self, policies):
        self.root = False
        merged = {}
        for pol in policies:
            if pol.name == "root":
                self.root = True
                continue
            for p, caps in pol.rules.items():
                cur = merged.setdefault(p, set())
                cur.update(caps)
                if "deny" in cur:
                    merged[p] = {"deny"}
        self.exact = {}
        self.wild = []
        for p, caps in merged.items():
            if p.endswith("*") or "+" in p.split("/"):
                self.wild.append((_pattern_priority(p), _pattern_regex(p), caps))
            else:
                self.exact[p] = caps
        self.wild.sort(key=lambda x: x[0], reverse=True)

    def capabilities(self, path):
        if self.root:
            return {"root"}
        if path in self.exact:
            return set(self.exact[path])
        for _prio, rx, caps in self.wild:
            if rx.match(path):
                return set(caps)
        return set()

    def allows(self, path, op, sudo=False):
        if self.root:
            return True
        caps = self.capabilities(path)
        if "deny" in caps or op not in caps:
            return False
        if sudo and "sudo" not in caps:
            return False
        return True
