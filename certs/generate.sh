#!/usr/bin/env bash
# Certificates for the chart's certs.mode=existing: a CA and a serving certificate for the
# webhook Service, a Secret manifest holding them, and a values file with the caBundle.
#
#   certs/generate.sh [-n NAMESPACE] [-s SERVICE] [-d DAYS] [-c CLUSTER_DOMAIN] [-o OUT_DIR]
#   kubectl apply -f OUT_DIR/secret.yaml
#   helm upgrade --install egress-guard charts/egress-guard -n NAMESPACE -f OUT_DIR/values-certs.yaml
#
# SERVICE is the webhook Service, i.e. the chart's full name (the release name when it
# contains "egress-guard", else RELEASE-egress-guard). The CA key stays in OUT_DIR only
# (never in the Secret): keep it offline to sign the next certificate, or delete it.
# Set EGRESS_GUARD to the CLI to use (default: egress-guard on PATH).
set -euo pipefail

namespace=egress-guard
service=egress-guard
days=365
cluster_domain=cluster.local
out=./egress-guard-certs

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while getopts "n:s:d:c:o:h" opt; do
  case "$opt" in
    n) namespace=$OPTARG ;;
    s) service=$OPTARG ;;
    d) days=$OPTARG ;;
    c) cluster_domain=$OPTARG ;;
    o) out=$OPTARG ;;
    h) usage 0 ;;
    *) usage 2 >&2 ;;
  esac
done

cli=${EGRESS_GUARD:-egress-guard}
secret="${service}-webhook-tls"

"$cli" certs generate --out "$out" --days "$days" \
  --host "$service" \
  --host "$service.$namespace" \
  --host "$service.$namespace.svc" \
  --host "$service.$namespace.svc.$cluster_domain" >/dev/null

b64() { base64 <"$1" | tr -d '\n'; }

umask 077
cat >"$out/secret.yaml" <<YAML
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata:
  name: $secret
  namespace: $namespace
  labels:
    app.kubernetes.io/name: egress-guard
    app.kubernetes.io/component: webhook
data:
  tls.crt: $(b64 "$out/tls.crt")
  tls.key: $(b64 "$out/tls.key")
  ca.crt: $(b64 "$out/ca.crt")
YAML

{
  printf 'certs:\n  mode: existing\n  existing:\n    secretName: %s\n    caBundle: |\n' "$secret"
  sed 's/^/      /' "$out/ca.crt"
} >"$out/values-certs.yaml"

cat <<MSG
wrote $out/secret.yaml (Secret $namespace/$secret) and $out/values-certs.yaml
  kubectl apply -f $out/secret.yaml
  helm upgrade --install $service charts/egress-guard -n $namespace -f $out/values-certs.yaml
the CA key is $out/ca.key: keep it offline or delete it
MSG
