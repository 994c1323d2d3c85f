#!/usr/bin/env bash
# scripts/demo-host.sh BUILD_DIR -- the kms-host story, told step by step.
#
# Starts tests/vault_server (a Vault-compatible server) with TLS on loopback,
# then runs the reference host against it: list plugins, read a provider key
# from Vault through os.environ/, generate a virtual key and see it in Vault
# under litellm/, delete it and see it gone, survive a Vault outage with the
# outbox, do the same over HTTP with `kms-host serve` and curl (LiteLLM's API),
# switch the same config to AWS Secrets Manager (tests/aws_server, checked
# with boto3) and then to the env backend, with no code change.
# scripts/demo builds first and then calls this. The server is stopped and
# the temporary directory removed on exit.
set -euo pipefail

# The demo keeps its keys in SQLite in its temporary directory: a DATABASE_URL
# of the caller's (LiteLLM's name) would select PostgreSQL instead.
unset DATABASE_URL
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
host="$build/host_stub/kms-host"
plugins="$build/plugins"
python=/usr/bin/python3
for f in "$host" "$plugins/hashicorp_vault.so" "$plugins/aws_secret_manager.so" "$plugins/env.so"; do
  [ -e "$f" ] || { echo "demo-host: $f is missing: build first (scripts/demo does)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/kms-demo.XXXXXX")
server_pid=
serve_pid=
aws_pid=
cleanup() {
  for pid in $serve_pid $aws_pid $server_pid; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bold="" plain=""
if [ -t 1 ]; then bold=$(tput bold 2>/dev/null || true); plain=$(tput sgr0 2>/dev/null || true); fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
say() { printf '   %s\n' "$@"; }
run() { printf '%s$ %s%s\n' "$bold" "kms-host ${*}" "$plain"; "$host" --config "$work/config.yaml" "$@"; }

# Read secret/data/NAME straight from the server's HTTP API (as any Vault client would).
vault_get() {
  "$python" - "$VAULT_URL" "$work/certs/ca.pem" "$1" <<'EOF'
import json, ssl, sys, urllib.error, urllib.request
url, ca, name = sys.argv[1:4]
req = urllib.request.Request(f"{url}/v1/secret/data/{name}", headers={"X-Vault-Token": "root"})
try:
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca)) as r:
        print(json.load(r)["data"]["data"]["key"])
except urllib.error.HTTPError as e:
    print(f"<HTTP {e.code}: not found>" if e.code == 404 else f"<HTTP {e.code}>")
EOF
}
# Read a secret from the AWS test server with boto3, as any AWS client would.
aws_get() {
  "$python" - "$1" <<'EOF'
import os, sys, boto3, botocore.exceptions
# Debian 12's botocore reads neither AWS_REGION nor AWS_ENDPOINT_URL_SECRETS_MANAGER
# (the plugin reads both, as newer SDKs do): pass them; the keys come from AWS_*.
sm = boto3.client("secretsmanager", region_name=os.environ["AWS_REGION"],
                  endpoint_url=os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"],
                  verify=os.environ["AWS_CA_BUNDLE"])
try:
    print(sm.get_secret_value(SecretId=sys.argv[1])["SecretString"])
except botocore.exceptions.ClientError as e:
    if "marked for deletion" in str(e) or "scheduled for deletion" in str(e):
        d = sm.describe_secret(SecretId=sys.argv[1])
        print(f"<scheduled for deletion on {d['DeletedDate']:%Y-%m-%d}: {e.response['Error']['Code']}>")
    else:
        print(f"<{e.response['Error']['Code']}>")
EOF
}
vault_seal() {
  "$python" - "$VAULT_URL" "$work/certs/ca.pem" "$1" <<'EOF'
import json, ssl, sys, urllib.request
url, ca, sealed = sys.argv[1:4]
req = urllib.request.Request(f"{url}/__test__/seal", method="POST",
                             data=json.dumps({"sealed": sealed == "true"}).encode())
urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca)).read()
EOF
}

step "Starting a Vault-compatible server with TLS on loopback"
bash "$root/tests/vault_server/make_certs.sh" "$work/certs" >/dev/null
"$python" "$root/tests/vault_server/server.py" --port 0 --ready-file "$work/ready" \
  --tls-cert "$work/certs/server.pem" --tls-key "$work/certs/server.key" --test-controls \
  >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do [ -s "$work/ready" ] && break; sleep 0.05; done
[ -s "$work/ready" ] || { echo "demo-host: the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
VAULT_URL=$(cat "$work/ready")
say "listening on $VAULT_URL (a throwaway CA signed its certificate; the plugin verifies it)"

# The plugin reads its connection from the environment, exactly like LiteLLM.
export HCP_VAULT_ADDR="$VAULT_URL" HCP_VAULT_TOKEN=root VAULT_CACERT="$work/certs/ca.pem"
unset OPENAI_API_KEY VAULT_ADDR VAULT_TOKEN KMS_PLUGIN_PATH || true
say "HCP_VAULT_ADDR=$HCP_VAULT_ADDR HCP_VAULT_TOKEN=root VAULT_CACERT=<the test CA>"

cat >"$work/config.yaml" <<EOF
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/OPENAI_API_KEY
general_settings:
  master_key: sk-1234          # LiteLLM's; kms-host serve checks it
  key_management_system: hashicorp_vault
  plugin_dir: $plugins
  key_management_settings:
    store_virtual_keys: true
    prefix_for_stored_virtual_keys: litellm/
    access_mode: read_and_write
EOF
step "The config: a LiteLLM proxy config.yaml, unchanged in shape"
sed 's/^/   | /' "$work/config.yaml"

step "1. Which secret managers can this host load?"
run plugins
say "Each backend is a .so found by the name in key_management_system; the loader checked its ABI."

step "2. An operator stores the provider key in Vault (not in the environment)"
printf '%s\n' "sk-proj-demo-provider-key-0123456789abcdef" | run secret put OPENAI_API_KEY
say "Vault now holds secret/data/OPENAI_API_KEY = $(vault_get OPENAI_API_KEY | cut -c1-12)..."

step "3. The gateway resolves os.environ/OPENAI_API_KEY -- through Vault"
run resolve
say "OPENAI_API_KEY is not set in this shell: the value came from Vault through the plugin."
say "Values are always shown redacted; an unresolvable reference would be an error, not ''."

step "4. Generate a virtual key; with store_virtual_keys it is written to Vault under litellm/"
out=$(run key generate --alias demo 2>&1)
printf '%s\n' "$out"
key=$(printf '%s\n' "$out" | sed -n 's/^key: //p')
stored=$(vault_get litellm/demo)
if [ "$stored" = "$key" ]; then
  say "Vault secret/data/litellm/demo holds exactly the key printed above."
else
  say "UNEXPECTED: Vault holds '$stored'"; exit 1
fi
run key list
say "The host's database keeps only the key's SHA-256, its id, alias and secret name."

step "5. Delete it: the virtual key and its Vault secret go together"
run key delete --alias demo
say "Vault secret/data/litellm/demo now: $(vault_get litellm/demo)"

step "6. Nothing lost: Vault goes down while a key is created"
vault_seal true
say "(Vault is sealed: every request gets 503)"
set +e
run key generate --alias outage
rc=$?
set -e
say "exit status $rc: the key exists and works, the Vault write is queued in the outbox"
say "(committed in the same SQLite transaction as the key itself)."
vault_seal false
say "(Vault is back)"
run sync
say "Vault secret/data/litellm/outage now: $(vault_get litellm/outage | cut -c1-6)... -- delivered."
run key delete --alias outage >/dev/null

step "7. The same over HTTP, the way the LiteLLM docs do it: kms-host serve + curl"
"$host" --config "$work/config.yaml" serve --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
serve_pid=$!
for _ in $(seq 200); do grep -q '^listening: ' "$work/serve.out" 2>/dev/null && break; sleep 0.05; done
grep -q '^listening: ' "$work/serve.out" || { echo "demo-host: serve did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }
api=$(sed -n 's/^listening: //p' "$work/serve.out")
say "kms-host serve is listening on $api"
printf '%s$ %s%s\n' "$bold" "curl -X POST $api/key/generate -H 'Authorization: Bearer sk-1234' -d '{\"key_alias\": \"my-vault-key\", \"duration\": \"20m\"}'" "$plain"
out=$(curl -sS -X POST "$api/key/generate" -H 'Authorization: Bearer sk-1234' \
        -H 'Content-Type: application/json' -d '{"key_alias": "my-vault-key", "duration": "20m"}')
say "$out"
key=$("$python" -c 'import json,sys; print(json.load(sys.stdin)["key"])' <<<"$out")
[ "$(vault_get litellm/my-vault-key)" = "$key" ] || { say "UNEXPECTED: Vault does not hold the key"; exit 1; }
say "Vault secret/data/litellm/my-vault-key holds that key (kms_host.secret_manager: landed)."
printf '%s$ %s%s\n' "$bold" "curl -X POST $api/key/delete -H 'Authorization: Bearer sk-1234' -d '{\"key_aliases\": [\"my-vault-key\"]}'" "$plain"
say "$(curl -sS -X POST "$api/key/delete" -H 'Authorization: Bearer sk-1234' \
        -H 'Content-Type: application/json' -d '{"key_aliases": ["my-vault-key"]}')"
say "Vault secret/data/litellm/my-vault-key now: $(vault_get litellm/my-vault-key)"
kill -TERM "$serve_pid"
wait "$serve_pid"
serve_pid=
say "SIGTERM: in-flight requests finished, exit 0. Its access log names routes, never keys:"
grep 'access' "$work/serve.log" | sed 's/^/   | /'

step "8. Same config, another store: key_management_system: aws_secret_manager"
"$python" "$root/tests/aws_server/server.py" --port 0 --ready-file "$work/aws-ready" \
  --region eu-west-1 --tls-cert "$work/certs/server.pem" --tls-key "$work/certs/server.key" \
  >"$work/aws-server.log" 2>&1 &
aws_pid=$!
for _ in $(seq 200); do [ -s "$work/aws-ready" ] && break; sleep 0.05; done
[ -s "$work/aws-ready" ] || { echo "demo-host: the AWS server did not start:" >&2; cat "$work/aws-server.log" >&2; exit 1; }
# AWS's own variables, as boto3 and the aws CLI read them; the keys are the
# test server's (it verifies SigV4 signatures for real).
export AWS_ENDPOINT_URL_SECRETS_MANAGER
AWS_ENDPOINT_URL_SECRETS_MANAGER=$(cat "$work/aws-ready")
export AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=AKIAKMSPLUGTEST00001 \
  AWS_SECRET_ACCESS_KEY=kmsplug/test/secret/access/key/0000000000 AWS_CA_BUNDLE="$work/certs/ca.pem"
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
say "An AWS Secrets Manager-compatible server (tests/aws_server, real SigV4) listens on $AWS_ENDPOINT_URL_SECRETS_MANAGER"
say "AWS_ENDPOINT_URL_SECRETS_MANAGER=<it> AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=AKIA... AWS_CA_BUNDLE=<the test CA>"
cp "$work/config.yaml" "$work/config.vault.yaml"
sed -i 's/key_management_system: hashicorp_vault/key_management_system: aws_secret_manager/' "$work/config.yaml"
say "The whole change to config.yaml:"
diff "$work/config.vault.yaml" "$work/config.yaml" | sed 's/^/   | /' || true
out=$(run key generate --alias demo-aws 2>&1)
printf '%s\n' "$out"
key=$(printf '%s\n' "$out" | sed -n 's/^key: //p')
stored=$(aws_get litellm/demo-aws)
if [ -n "$key" ] && [ "$stored" = "$key" ]; then
  say "boto3: secretsmanager.get_secret_value(SecretId='litellm/demo-aws') returns exactly that key."
else
  say "UNEXPECTED: AWS holds '$stored'"; exit 1
fi
run key delete --alias demo-aws
stored=$(aws_get litellm/demo-aws)
case "$stored" in
  "<scheduled for deletion"*) say "boto3 now: $stored" ;;
  *) say "UNEXPECTED: after the delete AWS answers '$stored'"; exit 1 ;;
esac
say "(LiteLLM's recovery window of 7 days; recovery_window_in_days or force_delete_without_recovery change it)"
kill -TERM "$aws_pid"
wait "$aws_pid" || true
aws_pid=
cp "$work/config.vault.yaml" "$work/config.yaml"

step "9. Same config, other backend: key_management_system: env -- no code change"
sed -i 's/key_management_system: hashicorp_vault/key_management_system: env/;
        /store_virtual_keys/d; /prefix_for_stored/d; /access_mode/d' "$work/config.yaml"
sed -i 's/^  key_management_settings:$/  key_management_settings: {}/' "$work/config.yaml"
export OPENAI_API_KEY="sk-proj-from-the-environment-0123456789"
say "OPENAI_API_KEY is now exported in the environment"
run resolve
say "The host is the same binary; only the plugin name in config.yaml changed."

step "Point it at a real Vault or OpenBao"
say "export HCP_VAULT_ADDR=https://vault.example.com:8200   # or VAULT_ADDR"
say "export HCP_VAULT_TOKEN=...                              # or VAULT_TOKEN / cert / AppRole login"
say "export VAULT_CACERT=/path/to/ca.pem                     # if your CA is private"
say "$build/host_stub/kms-host --config host_stub/examples/config.yaml resolve"
say "Several gateway replicas? Share one key table in PostgreSQL (LiteLLM's setting):"
say "  general_settings: {database_url: os.environ/DATABASE_URL}   # or export DATABASE_URL"
say "  export DATABASE_URL='postgresql://kms@db.example.com/litellm?sslmode=verify-full'"
say "(the password from PGPASSWORD or ~/.pgpass; without either setting: SQLite, as above)."
say "AWS Secrets Manager instead: key_management_system: aws_secret_manager, AWS_REGION and the"
say "  usual AWS credentials (keys, AWS_PROFILE, web identity on EKS, ECS, EC2 IMDSv2)."
say "See host_stub/README.md, plugins/hashicorp_vault/README.md and plugins/aws_secret_manager/README.md."
printf '\n%sdemo finished%s (the server is stopped and its files removed)\n' "$bold" "$plain"
