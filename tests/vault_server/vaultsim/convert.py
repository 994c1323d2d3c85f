"""Vault's field conversions (framework.FieldData), Go formatting and small helpers.

Inputs are converted the way Vault's Go framework does (ints from strings,
Go durations, comma-separated string lists) and bad values get Vault's
"error converting input" messages.  Pure functions; thread-safe.
"""

import datetime
import json
import re
import secrets
import string
import uuid

from testserver.paths import clean_path

from .base import bad

ALNUM = string.ascii_letters + string.digits


def rand_str(n):
    return "".join(secrets.choice(ALNUM) for _ in range(n))


def new_uuid():
    return str(uuid.uuid4())


def rfc3339(ts):
    """Go's time.RFC3339Nano rendering (UTC, trailing zeros trimmed)."""
    if ts is None:
        return None
    dt = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    s = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        s += "." + ("%06d" % dt.microsecond).rstrip("0")
    return s + "Z"


def go_duration(secs):
    """Render seconds like Go's time.Duration.String() (integral seconds)."""
    secs = int(secs)
    if secs == 0:
        return "0s"
    sign = "-" if secs < 0 else ""
    secs = abs(secs)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    out = ""
    if h:
        out += "%dh" % h
    if h or m:
        out += "%dm" % m
    out += "%ds" % s
    return sign + out


_DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6,
              "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DUR_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h|d)")


def conv_error(value, field, typ):
    return bad('error converting input %s for field "%s": cannot parse %s as %s'
               % (_go_repr(value), field, json.dumps(value), typ))


def go_quote(s):
    """Go's %q of a string (JSON quoting is the same for printable text)."""
    return json.dumps(s, ensure_ascii=False)


def _go_repr(v):
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v)


def parse_duration(value, field="ttl"):
    """parseutil.ParseDurationSecond: ints are seconds, strings Go durations."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise conv_error(value, field, "duration")
    if isinstance(value, (int, float)):
        return int(value)
    if not isinstance(value, str):
        raise conv_error(value, field, "duration")
    s = value.strip()
    if s == "":
        return 0
    if re.fullmatch(r"[-+]?[0-9]+", s):
        return int(s)
    sign = 1
    if s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    pos, total = 0, 0.0
    for m in _DUR_PART.finditer(s):
        if m.start() != pos:
            raise conv_error(value, field, "duration")
        total += float(m.group(1)) * _DUR_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise conv_error(value, field, "duration")
    return int(sign * total)


def to_int(value, field):
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        s = value.strip()
        if s == "":
            return 0
        try:
            return int(s, 10)
        except ValueError:
            pass
    raise conv_error(value, field, "int")


def to_bool(value, field):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        s = value.strip().lower()
        if s in ("1", "t", "true"):
            return True
        if s in ("0", "f", "false", ""):
            return False
    raise conv_error(value, field, "bool")


def to_strlist(value, field, lower=False):
    """framework.TypeCommaStringSlice."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list):
        items = []
        for v in value:
            if isinstance(v, (dict, list)):
                raise conv_error(value, field, "[]string")
            items.append(v if isinstance(v, str) else _go_repr(v))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        items = [_go_repr(value)]
    else:
        raise conv_error(value, field, "[]string")
    out = []
    for it in items:
        it = it.strip()
        if lower:
            it = it.lower()
        if it and it not in out:
            out.append(it)
    return out


def to_map(value, field):
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad('error converting input %s for field "%s": expected a map, got %s'
                  % (_go_repr(value), field, type(value).__name__))
    return value


def to_strmap(value, field):
    m = to_map(value, field)
    if m is None:
        return None
    out = {}
    for k, v in m.items():
        if not isinstance(v, str):
            raise bad('error converting input for field "%s": value of key "%s" is not a string'
                      % (field, k))
        out[k] = v
    return out


def unknown_param_warning(data, known):
    extra = sorted(k for k in data if k not in known)
    if not extra:
        return None
    return "Endpoint ignored these unrecognized parameters: [%s]" % " ".join(extra)


def sanitize_policies(policies, add_default):
    """policyutil.SanitizePolicies."""
    out = []
    for p in policies:
        p = p.strip().lower()
        if p and p not in out:
            out.append(p)
    if add_default and "default" not in out:
        out.append("default")
    if "root" in out:
        return ["root"]
    return sorted(out)


def json_merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    result = dict(target)
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = json_merge_patch(result.get(k), v)
    return result


def glob_match(pattern, value):
    """Vault's glob (only '*' is special)."""
    rx = "^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$"
    return re.match(rx, value, re.S) is not None


def go_clean_path(p):
    """Go's path.Clean as used by net/http.ServeMux (keeps a trailing slash)."""
    return clean_path(p)
