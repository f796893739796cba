#!/usr/bin/env bash
# Generates the test cluster's PKI into DIR with the openssl CLI (shared by cluster.sh and
# the Rust harness, tests/src/k8s.rs):
#
#   ca.crt ca.key                the cluster CA (signs everything below)
#   apiserver.crt apiserver.key  serving cert: 127.0.0.1, localhost, kubernetes.default.svc, 198.19.0.1
#   admin.crt admin.key          client cert CN=kubernetes-admin, O=system:masters
#   sa.key sa.pub                service-account token signing key pair
#
# ECDSA P-256 keys in PKCS#8 (fast to generate; accepted by Go and rustls alike).
# Usage: certs.sh DIR
set -euo pipefail

DIR=${1:?usage: certs.sh DIR}
mkdir -p "$DIR"
cd "$DIR"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign NAME SUBJECT EXTENSIONS: NAME.key + NAME.crt signed by the CA, valid for a year.
sign() {
	local name=$1 subject=$2 ext=$3
	key "$name.key"
	openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr"
	printf '%b\n' "$ext" >"$name.ext"
	openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
		-days 365 -sha256 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
	rm -f "$name.csr" "$name.ext"
}

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days 365 -subj "/CN=weft-test-ca" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
	-out ca.crt

sign apiserver "/CN=kube-apiserver" \
	"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:198.19.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"

sign admin "/O=system:masters/CN=kubernetes-admin" \
	"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth"

key sa.key
openssl pkey -in sa.key -pubout -out sa.pub
rm -f ca.srl
chmod 644 ./*.crt sa.pub
