#!/usr/bin/env bash
# make_certs.sh OUTDIR -- throwaway PKI for the Vault test server and mTLS tests.
#
# Creates (EC P-256 keys, PEM):
#   ca.pem ca.key                        test CA
#   server.pem server.key                server cert, SAN 127.0.0.1, ::1, localhost
#   client.pem client.key                client cert (CN kmsplug-client) signed by the CA
#   other-ca.pem other-ca.key            a second, unrelated CA
#   untrusted-client.pem/.key            client cert signed by other-ca
#   expired-client.pem/.key              client cert signed by the CA, validity in 2020
#   wrong-key.pem                        a private key that does not match client.pem
# Idempotent: does nothing when OUTDIR already holds a complete, valid set.
set -euo pipefail

out=${1:?usage: make_certs.sh OUTDIR}
mkdir -p "$out"

files="ca.pem ca.key server.pem server.key client.pem client.key other-ca.pem other-ca.key
untrusted-client.pem untrusted-client.key expired-client.pem expired-client.key wrong-key.pem"

complete=1
for f in $files; do [ -s "$out/$f" ] || complete=0; done
if [ "$complete" = 1 ] && openssl x509 -in "$out/ca.pem" -noout -checkend 86400 >/dev/null 2>&1 \
   && openssl verify -CAfile "$out/ca.pem" "$out/server.pem" >/dev/null 2>&1; then
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/make_certs.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

cat > ext.cnf <<'EOF'
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, IP:::1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

mkca() { # name CN
    key "$1.key"
    openssl req -new -x509 -key "$1.key" -subj "/O=kmsplug tests/CN=$2" -days 3650 -sha256 \
        -config ext.cnf -extensions ca_ext -out "$1.pem" 2>/dev/null
}

mkcert() { # name CN ca ext
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/O=kmsplug tests/CN=$2" -out "$1.csr" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -set_serial "0x$(openssl rand -hex 12)" \
        -days 825 -sha256 -extfile ext.cnf -extensions "$4" -out "$1.pem" 2>/dev/null
}

mkca ca "kmsplug test CA"
mkca other-ca "kmsplug unrelated CA"
mkcert server localhost ca server_ext
mkcert client kmsplug-client ca client_ext
mkcert untrusted-client kmsplug-untrusted-client other-ca client_ext

# Expired client cert: `openssl ca` accepts explicit start and end dates.
key expired-client.key
openssl req -new -key expired-client.key -subj "/O=kmsplug tests/CN=kmsplug-expired-client" \
    -out expired-client.csr 2>/dev/null
mkdir -p ca_db
: > ca_db/index.txt
openssl rand -hex 8 > ca_db/serial
cat > ca.cnf <<EOF
[ca]
default_ca = test_ca
[test_ca]
dir = $work/ca_db
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[any]
organizationName = optional
commonName = supplied
EOF
cat ext.cnf >> ca.cnf
openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired-client.csr \
    -startdate 20200101000000Z -enddate 20200201000000Z -extensions client_ext \
    -notext -out expired-client.pem >/dev/null 2>&1

key wrong-key.pem

chmod 600 ./*.key wrong-key.pem
for f in $files; do
    [ "$f" = ca.pem ] && continue
    cp "$f" "$out/$f.tmp.$$" && mv -f "$out/$f.tmp.$$" "$out/$f"
done
# ca.pem last: its presence marks a complete set
cp ca.pem "$out/ca.pem.tmp.$$" && mv -f "$out/ca.pem.tmp.$$" "$out/ca.pem"
echo "make_certs: wrote test PKI to $out"
