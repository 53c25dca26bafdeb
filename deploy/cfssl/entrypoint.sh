#!/bin/sh
# Start Debian's `cfssl serve` for deploy/compose.yaml: create the CA on first start, then serve.
#
#   CFSSL_AUTH_KEY  hex HMAC key of the authenticated "device" profile (required; at least 32 hex
#                   digits). config.json reads it as "env:CFSSL_AUTH_KEY": cfssl would accept an
#                   unset variable as an EMPTY key, so it is checked here first.
#   CFSSL_DATA_DIR  where ca.pem and ca-key.pem live (default /var/lib/cfssl, a volume)
#   CFSSL_CONFIG_DIR  config.json and ca-csr.json (default /etc/cfssl)
#   CFSSL_ADDRESS, CFSSL_PORT  listener (default 0.0.0.0:8888)
set -eu

key=${CFSSL_AUTH_KEY:-}
if [ -z "$key" ]; then
    echo "cfssl: CFSSL_AUTH_KEY is not set (hex HMAC key shared with the bootstrap server)" >&2
    exit 2
fi
case $key in
    *[!0-9A-Fa-f]*) echo "cfssl: CFSSL_AUTH_KEY must be hexadecimal" >&2; exit 2 ;;
esac
if [ "${#key}" -lt 32 ] || [ $(( ${#key} % 2 )) -ne 0 ]; then
    echo "cfssl: CFSSL_AUTH_KEY must be an even number of hex digits, at least 32 (16 bytes)" >&2
    exit 2
fi

data=${CFSSL_DATA_DIR:-/var/lib/cfssl}
config=${CFSSL_CONFIG_DIR:-/etc/cfssl}
umask 077
if [ ! -s "$data/ca.pem" ] || [ ! -s "$data/ca-key.pem" ]; then
    echo "cfssl: creating the CA in $data" >&2
    cd "$data"
    cfssl gencert -initca "$config/ca-csr.json" | cfssljson -bare ca
    rm -f ca.csr
fi

exec cfssl serve \
    -address "${CFSSL_ADDRESS:-0.0.0.0}" -port "${CFSSL_PORT:-8888}" \
    -ca "$data/ca.pem" -ca-key "$data/ca-key.pem" -config "$config/config.json"
