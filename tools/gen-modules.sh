#!/usr/bin/env bash
# Regenerates the Go modules under tools/ (go.mod + go.sum) from tools/versions.env.
#
# Why: the control-plane binaries are built from upstream Go modules, the way
# envtest-style harnesses do. k8s.io/kubernetes is not meant to be imported as a
# module: its go.mod requires every k8s.io/* staging module at v0.0.0 and
# replaces them with local ./staging paths, which do not exist in the module zip.
# A consumer must therefore pin each staging module to the matching published
# v0.X.Y itself. Those replace lines are derived here from the upstream go.mod of
# the pinned version instead of being written (and bumped) by hand.
#
# Usage: tools/gen-modules.sh   (needs the Go module proxy; commit the result)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools/versions.env
. "$here/versions.env"
export GOWORK=off GOFLAGS=-mod=mod

# Prints `old=new@version` for every replace directive of an upstream go.mod that
# a consumer has to repeat: local-path replaces of staging modules become the
# published staging version (only for modules the upstream module requires, as
# unreleased ones such as sample-cli-plugin are never published), replaces that
# already point at a published version are kept as they are.
replace_args() {
    local gomod=$1 staging_version=$2
    go mod edit -json "$gomod" | python3 -c '
import json, sys
mod = json.load(sys.stdin)
staging_version = sys.argv[1]
required = {r["Path"] for r in mod.get("Require") or []}
for rep in mod.get("Replace") or []:
    old, new = rep["Old"]["Path"], rep["New"]
    if new["Path"].startswith("./staging/"):
        if old in required and staging_version:
            print(f"{old}={old}@{staging_version}")
    elif new.get("Version"):
        print(old + "=" + new["Path"] + "@" + new["Version"])
' "$staging_version"
}

# gen_module DIR MODULE VERSION STAGING_VERSION TOOL_PACKAGE...
gen_module() {
    local dir=$here/$1 module=$2 version=$3 staging_version=$4
    shift 4
    echo ">> $dir: $module $version" >&2
    local gomod
    gomod=$(go mod download -json "$module@$version" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    local go_directive
    go_directive=$(go mod edit -json "$gomod" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Go"])')
    mkdir -p "$dir"
    rm -f "$dir/go.mod" "$dir/go.sum"
    (
        cd "$dir"
        go mod init "egress-guard.invalid/tools/$(basename "$dir")" 2>/dev/null
        go mod edit -go="$go_directive" -require="$module@$version"
        local reps rep
        reps=$(replace_args "$gomod" "$staging_version")
        for rep in $reps; do
            go mod edit -replace="$rep"
        done
        local pkg
        for pkg in "$@"; do
            go mod edit -tool="$pkg"
        done
        go mod tidy
    )
}

# k8s.io/kubernetes vX.Y.Z publishes its staging modules as v0.Y.Z.
k8s_staging=v0.${KUBERNETES_VERSION#v1.}

gen_module kube k8s.io/kubernetes "$KUBERNETES_VERSION" "$k8s_staging" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
gen_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "" go.etcd.io/etcd/server/v3
gen_module helm helm.sh/helm/v3 "$HELM_VERSION" "" helm.sh/helm/v3/cmd/helm
# The oracle is a test binary of tools/meshsim; tidy picks its imports from the sources.
gen_module meshsim istio.io/istio "$ISTIO_VERSION" ""
# Istio's injection webhook for the e2e harness; tidy picks its imports from main.go.
gen_module istio-inject istio.io/istio "$ISTIO_VERSION" ""
echo "regenerated; now run: make tools" >&2
