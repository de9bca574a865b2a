#!/bin/bash
# Makes the development update-signing keys in DIR unless they exist: a CA (dev-ca.cert.pem, the
# image's RAUC keyring) and a signing key + certificate issued by it (dev-signing.*.pem).
# They live outside the repository (default DIR: /var/cache/witness-image/signing) and are for
# development and tests only: a production build passes its own CA as --keyring and signs with
# its own key (see rootfs/README.md).
#
#   rootfs/signing.sh DIR
set -euo pipefail
dir=${1:?usage: rootfs/signing.sh DIR}
command -v openssl >/dev/null || { echo "signing.sh: openssl is missing (apt-get install openssl)" >&2; exit 1; }
if [ -s "$dir/dev-ca.cert.pem" ] && [ -s "$dir/dev-signing.key.pem" ] && [ -s "$dir/dev-signing.cert.pem" ]; then
    exit 0
fi
mkdir -p "$dir"
chmod 0700 "$dir"
tmp=$(mktemp -d "$dir/.new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
# shellcheck disable=SC2086
openssl req -x509 $ec -days 3650 -subj "/O=Witness development/CN=Witness development update CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$tmp/dev-ca.key.pem" -out "$tmp/dev-ca.cert.pem" 2>/dev/null
# shellcheck disable=SC2086
openssl req $ec -subj "/O=Witness development/CN=Witness development update signing" \
    -keyout "$tmp/dev-signing.key.pem" -out "$tmp/dev-signing.csr" 2>/dev/null
openssl x509 -req -in "$tmp/dev-signing.csr" -CA "$tmp/dev-ca.cert.pem" -CAkey "$tmp/dev-ca.key.pem" \
    -CAcreateserial -days 3650 -out "$tmp/dev-signing.cert.pem" \
    -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n') 2>/dev/null
chmod 0600 "$tmp"/*.key.pem
mv "$tmp"/dev-ca.key.pem "$tmp"/dev-ca.cert.pem "$tmp"/dev-signing.key.pem "$tmp"/dev-signing.cert.pem "$dir/"
echo "signing.sh: made development update-signing keys in $dir"
