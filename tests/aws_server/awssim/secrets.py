"""Secrets Manager's operations (JSON 1.1: X-Amz-Target secretsmanager.<Op>).

Secrets live in memory, keyed by name, each with versions and staging
labels (AWSCURRENT, AWSPREVIOUS) moved as AWS moves them.  DeleteSecret
schedules deletion after a recovery window (7-30 days, default 30) that the
server's clock ends; a secret scheduled for deletion refuses reads and writes
with AWS's InvalidRequestException until RestoreSecret.

Thread safety: every operation runs under SecretsManager.lock.
"""

import base64
import binascii
import json
import re
import threading
import uuid

from .errors import AwsError, invalid_parameter, invalid_request, marked_for_deletion, not_found, validation

CURRENT, PREVIOUS = "AWSCURRENT", "AWSPREVIOUS"
DAY = 86400
MAX_UNLABELED_VERSIONS = 100      # AWS drops older versions that have no staging label
NAME_RE = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
TOKEN_RE = re.compile(r"[A-Za-z0-9-]{32,64}")
FILTER_VALUE_RE = re.compile(r"!?[a-zA-Z0-9 :_@/+=.\-!]*")
FILTER_KEYS = ["description", "name", "tag-key", "tag-value", "primary-region", "owning-service", "all"]
SUFFIX_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class Version:
    __slots__ = ("id", "string", "binary", "stages", "created")

    def __init__(self, vid, string, binary, created):
        self.id, self.string, self.binary, self.created = vid, string, binary, created
        self.stages = []


class Secret:
    def __init__(self, name, arn, now):
        self.name, self.arn = name, arn
        self.description = None
        self.kms_key_id = None
        self.tags = []
        self.versions = {}
        self.created = self.last_changed = now
        self.last_accessed = None
        self.deletion_date = None       # set while scheduled for deletion
        self.deleted_at = None


# -- request field helpers (botocore validates too; raw clients meet these)

def _field(data, name, types, required=False):
    v = data.get(name)
    if v is None:
        if required:
            raise validation("Value null at '%s%s' failed to satisfy constraint: Member must not be null"
                             % (name[0].lower(), name[1:]))
        return None
    ok = isinstance(v, bool) if types is bool else isinstance(v, types) and not isinstance(v, bool)
    if not ok:
        want = {bool: "a boolean", int: "an integer", str: "a string", list: "a list"}[types]
        raise AwsError("SerializationException", "%s must be %s" % (name, want))
    return v


def _str(data, name, required=False):
    return _field(data, name, str, required)


def _tags(data, name="Tags"):
    tags = _field(data, name, list)
    out = []
    for t in tags or []:
        if not isinstance(t, dict) or not isinstance(t.get("Key"), str) or not isinstance(t.get("Value", ""), str):
            raise invalid_parameter("Tags must be a list of {\"Key\": string, \"Value\": string}.")
        out.append({"Key": t["Key"], "Value": t.get("Value", "")})
    return out


def _merge_tags(old, new):
    keys = {t["Key"] for t in new}
    return [t for t in old if t["Key"] not in keys] + new


def _value(data):
    """(string, binary bytes) from SecretString/SecretBinary; both None when neither is given."""
    s = _str(data, "SecretString")
    b = _str(data, "SecretBinary")
    if s is not None and b is not None:
        raise invalid_parameter("You can't specify both a binary secret value and a string secret value "
                                "in the same secret.")
    if b is not None:
        try:
            b = base64.b64decode(b, validate=True)
        except (binascii.Error, ValueError):
            raise AwsError("SerializationException", "Invalid base64: SecretBinary")
    return s, b


def _token(data):
    tok = _str(data, "ClientRequestToken")
    if tok is not None and not TOKEN_RE.fullmatch(tok):
        raise validation("Value '%s' at 'clientRequestToken' failed to satisfy constraint: Member must have "
                         "length greater than or equal to 32" % tok)
    return tok


class SecretsManager:
    def __init__(self, region, account, clock, rng):
        self.lock = threading.Lock()
        self.region, self.account, self.clock, self.rng = region, account, clock, rng
        self.secrets = {}
        self.denials = []               # (access key id or None, action regex, secret regex)

    def reset(self):
        with self.lock:
            self.secrets = {}
            self.denials = []

    # -- lookup

    def _purge(self, now):
        """Secrets whose recovery window has ended are gone."""
        for name in [n for n, s in self.secrets.items() if s.deletion_date is not None and s.deletion_date <= now]:
            del self.secrets[name]

    def _find(self, secret_id):
        """A secret by name, full ARN or partial ARN (without the 6-character suffix)."""
        if secret_id in self.secrets:
            return self.secrets[secret_id]
        if secret_id.startswith("arn:"):
            for s in self.secrets.values():
                if s.arn == secret_id or s.arn[:-7] == secret_id:
                    return s
        return None

    def _get(self, data, allow_deleted=False):
        sid = _str(data, "SecretId", required=True)
        s = self._find(sid)
        if s is None:
            raise not_found()
        if s.deletion_date is not None and not allow_deleted:
            raise marked_for_deletion()
        return s

    def _arn(self, name):
        suffix = "".join(self.rng.choice(SUFFIX_CHARS) for _ in range(6))
        return "arn:aws:secretsmanager:%s:%s:secret:%s-%s" % (self.region, self.account, name, suffix)

    def _version_id(self, token):
        return token or str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # -- versions and staging labels

    def _add_version(self, s, vid, string, binary, stages, now):
        """Adds a version (or accepts an identical retry); moves the labels; True if new."""
        old = s.versions.get(vid)
        if old is not None:
            if old.string == string and old.binary == binary:
                return False
            raise AwsError("ResourceExistsException",
                           "You can't modify an existing version, you can only create new versions.")
        v = Version(vid, string, binary, now)
        s.versions[vid] = v
        for label in stages:
            self._move_label(s, label, v)
        s.last_changed = now
        unlabeled = sorted((x for x in s.versions.values() if not x.stages), key=lambda x: x.created)
        for x in unlabeled[:max(0, len(unlabeled) - MAX_UNLABELED_VERSIONS)]:
            del s.versions[x.id]
        return True

    def _move_label(self, s, label, target):
        for x in s.versions.values():
            if label in x.stages and x is not target:
                x.stages.remove(label)
                if label == CURRENT:
                    self._move_label(s, PREVIOUS, x)
        if label not in target.stages:
            target.stages.append(label)

    def _version(self, s, vid, stage):
        if vid is not None:
            v = s.versions.get(vid)
            if v is None or (stage is not None and stage not in v.stages):
                raise AwsError("ResourceNotFoundException",
                               "Secrets Manager can't find the specified secret value for VersionId: %s" % vid)
            return v
        stage = stage or CURRENT
        for v in s.versions.values():
            if stage in v.stages:
                return v
        raise AwsError("ResourceNotFoundException",
                       "Secrets Manager can't find the specified secret value for staging label: %s" % stage)

    # -- access control (test controls add denials)

    def check_access(self, key_id, arn, action, data):
        target = data.get("SecretId") or data.get("Name") or "*"
        for who, act_re, res_re in self.denials:
            if (who is None or who == key_id) and re.fullmatch(act_re, action) and \
                    re.search(res_re, str(target)):
                raise AwsError("AccessDeniedException",
                               "User: %s is not authorized to perform: secretsmanager:%s on resource: %s "
                               "because no identity-based policy allows the secretsmanager:%s action"
                               % (arn, action, target, action))

    def deny(self, key_id, action_re, resource_re):
        with self.lock:
            self.denials.append((key_id, action_re, resource_re))

    # -- operations

    def call(self, op, data, identity):
        fn = OPERATIONS.get(op)
        if fn is None:
            raise AwsError("UnknownOperationException", "")
        with self.lock:
            self.check_access(identity.access_key_id, identity.arn, op, data)
            now = self.clock.now()
            self._purge(now)
            return fn(self, data, now)

    def create_secret(self, data, now):
        name = _str(data, "Name", required=True)
        if not NAME_RE.fullmatch(name):
            raise invalid_parameter("Invalid name. Must be a valid name containing alphanumeric characters, "
                                    "or any of the following: -/_+=.@!")
        string, binary = _value(data)
        token = _token(data)
        description = _str(data, "Description")
        kms = _str(data, "KmsKeyId")
        tags = _tags(data)
        s = self.secrets.get(name)
        if s is not None:
            if s.deletion_date is not None:
                raise invalid_request("You can't create this secret because a secret with this name is already "
                                      "scheduled for deletion.")
            v = s.versions.get(token) if token else None
            if v is not None and v.string == string and v.binary == binary:
                return {"ARN": s.arn, "Name": s.name, "VersionId": v.id}   # an idempotent retry
            raise AwsError("ResourceExistsException", "The operation failed because the secret %s already exists."
                           % name)
        s = Secret(name, self._arn(name), now)
        s.description, s.kms_key_id, s.tags = description, kms, tags
        out = {"ARN": s.arn, "Name": s.name}
        if string is not None or binary is not None:
            vid = self._version_id(token)
            self._add_version(s, vid, string, binary, [CURRENT], now)
            out["VersionId"] = vid
        self.secrets[name] = s
        return out

    def get_secret_value(self, data, now):
        s = self._get(data)
        v = self._version(s, _str(data, "VersionId"), _str(data, "VersionStage"))
        s.last_accessed = now
        out = {"ARN": s.arn, "Name": s.name, "VersionId": v.id, "VersionStages": list(v.stages),
               "CreatedDate": v.created}
        if v.binary is not None:
            out["SecretBinary"] = base64.b64encode(v.binary).decode("ascii")
        else:
            out["SecretString"] = v.string
        return out

    def put_secret_value(self, data, now):
        s = self._get(data)
        string, binary = _value(data)
        if string is None and binary is None:
            raise invalid_parameter("You must provide either SecretString or SecretBinary.")
        stages = _field(data, "VersionStages", list) or [CURRENT]
        if not all(isinstance(x, str) and 1 <= len(x) <= 256 for x in stages):
            raise invalid_parameter("VersionStages must be a list of 1 to 256 character labels.")
        vid = self._version_id(_token(data))
        self._add_version(s, vid, string, binary, stages, now)
        return {"ARN": s.arn, "Name": s.name, "VersionId": vid, "VersionStages": list(s.versions[vid].stages)}

    def update_secret(self, data, now):
        s = self._get(data)
        string, binary = _value(data)
        description = _str(data, "Description")
        kms = _str(data, "KmsKeyId")
        token = _token(data)
        if description is not None:
            s.description = description
            s.last_changed = now
        if kms is not None:
            s.kms_key_id = kms
        out = {"ARN": s.arn, "Name": s.name}
        if string is not None or binary is not None:
            vid = self._version_id(token)
            self._add_version(s, vid, string, binary, [CURRENT], now)
            out["VersionId"] = vid
        return out

    def describe_secret(self, data, now):
        return self._describe(self._get(data, allow_deleted=True), versions_key="VersionIdsToStages")

    def _describe(self, s, versions_key):
        out = {"ARN": s.arn, "Name": s.name, "RotationEnabled": False, "LastChangedDate": s.last_changed,
               "CreatedDate": s.created, versions_key: {v.id: list(v.stages) for v in s.versions.values()
                                                        if v.stages}}
        if s.description is not None:
            out["Description"] = s.description
        if s.kms_key_id is not None:
            out["KmsKeyId"] = s.kms_key_id
        if s.tags:
            out["Tags"] = [dict(t) for t in s.tags]
        if s.last_accessed is not None:
            out["LastAccessedDate"] = float(int(s.last_accessed // DAY) * DAY)   # AWS keeps the day only
        if s.deletion_date is not None:
            out["DeletedDate"] = s.deleted_at
        return out

    def list_secrets(self, data, now):
        limit = _field(data, "MaxResults", int)
        if limit is not None and not 1 <= limit <= 100:
            raise validation("Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value "
                             "%s" % (limit, "less than or equal to 100" if limit > 100 else
                                     "greater than or equal to 1"))
        filters = _parse_filters(_field(data, "Filters", list) or [])
        include_deleted = bool(_field(data, "IncludePlannedDeletion", bool))
        order = _str(data, "SortOrder") or "asc"
        if order not in ("asc", "desc"):
            raise validation("Value '%s' at 'sortOrder' failed to satisfy constraint: Member must satisfy enum "
                             "value set: [asc, desc]" % order)
        rows = sorted(((s.created, s.name), s) for s in self.secrets.values()
                      if (include_deleted or s.deletion_date is None) and _matches(s, filters, self.region))
        if order == "desc":
            rows.reverse()
        start = _decode_next_token(_str(data, "NextToken"), [k for k, _ in rows], order)
        page = rows[start:start + (limit or 100)]
        out = {"SecretList": [self._describe(s, versions_key="SecretVersionsToStages") for _, s in page]}
        if start + len(page) < len(rows):
            last = page[-1][0]
            out["NextToken"] = base64.urlsafe_b64encode(json.dumps([last[0], last[1], order]).encode()).decode()
        return out

    def delete_secret(self, data, now):
        force = _field(data, "ForceDeleteWithoutRecovery", bool)
        days = _field(data, "RecoveryWindowInDays", int)
        if force and days is not None:
            raise invalid_parameter("You can't use ForceDeleteWithoutRecovery in conjunction with "
                                    "RecoveryWindowInDays.")
        if days is not None and not 7 <= days <= 30:
            raise invalid_parameter("The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).")
        sid = _str(data, "SecretId", required=True)
        s = self._find(sid)
        if s is None:
            if force:   # AWS: forcing the deletion of a missing secret is not an error
                return {"ARN": sid if sid.startswith("arn:") else self._arn(sid),
                        "Name": sid.split(":secret:", 1)[-1], "DeletionDate": now}
            raise not_found()
        if force:
            del self.secrets[s.name]
            return {"ARN": s.arn, "Name": s.name, "DeletionDate": now}
        if s.deletion_date is not None:
            raise marked_for_deletion()
        s.deleted_at = now
        s.deletion_date = now + (30 if days is None else days) * DAY
        return {"ARN": s.arn, "Name": s.name, "DeletionDate": s.deletion_date}

    def restore_secret(self, data, now):
        s = self._get(data, allow_deleted=True)
        s.deletion_date = s.deleted_at = None
        return {"ARN": s.arn, "Name": s.name}

    def tag_resource(self, data, now):
        s = self._get(data)
        tags = _tags(data)
        if _field(data, "Tags", list) is None:
            raise validation("Value null at 'tags' failed to satisfy constraint: Member must not be null")
        s.tags = _merge_tags(s.tags, tags)
        return {}

    def untag_resource(self, data, now):
        s = self._get(data)
        keys = _field(data, "TagKeys", list)
        if keys is None:
            raise validation("Value null at 'tagKeys' failed to satisfy constraint: Member must not be null")
        s.tags = [t for t in s.tags if t["Key"] not in keys]
        return {}


def _parse_filters(raw):
    out = []
    for i, f in enumerate(raw, 1):
        if not isinstance(f, dict):
            raise AwsError("SerializationException", "Filters must be a list of objects.")
        key = f.get("Key")
        if key not in FILTER_KEYS:
            raise validation("Value '%s' at 'filters.%d.member.key' failed to satisfy constraint: Member must "
                             "satisfy enum value set: [%s]" % (key, i, ", ".join(FILTER_KEYS)))
        values = f.get("Values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values) or not 1 <= len(values) <= 10:
            raise invalid_parameter("Filter values must be a list of 1 to 10 strings.")
        for v in values:
            if len(v) > 512 or not FILTER_VALUE_RE.fullmatch(v):
                raise validation("Value '%s' at 'filters.%d.member.values' failed to satisfy constraint: Member "
                                 "must satisfy regular expression pattern: ^\\!?[a-zA-Z0-9 :_@\\/\\+\\=\\.\\-\\!]*$"
                                 % (v, i))
        out.append((key, values))
    return out


def _matches(s, filters, region):
    """Filters AND together, the values of one filter OR; a leading ! negates.  As AWS documents:
    prefix matches, case-sensitive except description; "all" splits the value into words, each of
    which must prefix-match (ignoring case) a word of the name, description or a tag."""
    fields = {"name": [s.name], "description": [s.description or ""], "tag-key": [t["Key"] for t in s.tags],
              "tag-value": [t["Value"] for t in s.tags], "primary-region": [region], "owning-service": []}
    everything = fields["name"] + fields["description"] + fields["tag-key"] + fields["tag-value"]
    words = [w.lower() for v in everything for w in re.split(r"[\s/_.:@+=-]+", v) + [v] if w]

    def hit(key, value):
        if key == "all":
            return all(any(w.startswith(q) for w in words) for q in value.lower().split())
        if key == "description":
            return any(h.lower().startswith(value.lower()) for h in fields[key])
        return any(h.startswith(value) for h in fields[key])
    for key, values in filters:
        positive = [v for v in values if not v.startswith("!")]
        negative = [v[1:] for v in values if v.startswith("!")]
        if positive and not any(hit(key, v) for v in positive):
            return False
        if any(hit(key, v) for v in negative):
            return False
    return True


def _decode_next_token(token, keys, order):
    """The index after the (created, name) a NextToken names."""
    if token is None:
        return 0
    try:
        created, name, tok_order = json.loads(base64.urlsafe_b64decode(token.encode()))
        assert tok_order == order
    except Exception:
        raise AwsError("InvalidNextTokenException", "The NextToken value is invalid.")
    last = (created, name)
    for i, k in enumerate(keys):
        if (k > last) if order == "asc" else (k < last):
            return i
    return len(keys)


OPERATIONS = {
    "CreateSecret": SecretsManager.create_secret,
    "GetSecretValue": SecretsManager.get_secret_value,
    "PutSecretValue": SecretsManager.put_secret_value,
    "UpdateSecret": SecretsManager.update_secret,
    "DescribeSecret": SecretsManager.describe_secret,
    "ListSecrets": SecretsManager.list_secrets,
    "DeleteSecret": SecretsManager.delete_secret,
    "RestoreSecret": SecretsManager.restore_secret,
    "TagResource": SecretsManager.tag_resource,
    "UntagResource": SecretsManager.untag_resource,
}
