#!/usr/bin/env bash
# Builds the pinned e2e control-plane tools from Go modules and caches them.
#
# Why: CI runs on a fresh machine with nothing but Go and the module proxy, so
# the harness must produce kube-apiserver, kubectl, etcd and helm itself. They
# are built from the modules pinned in tools/*/go.mod (generated from
# tools/versions.env) and cached outside the repository, keyed by version, so a
# second run only checks stamps and takes well under a second.
#
# Also places the CRDs of the pinned istio.io/api and sigs.k8s.io/gateway-api
# modules next to the binaries (istio-crds.yaml, gateway-api-crds.yaml), fetched
# with `go mod download` and verified against the checksum database like any
# other module.
#
# Output: progress on stderr; the directory holding the tools is printed as the
# LAST line on stdout.
#
# `tools/build.sh meshsim` builds only the mesh oracle (tools/meshsim, a go test
# binary linking Istio's config generator and simulation) and prints its path as
# the last line instead. The oracle is cached per Istio version and hash of its
# Go sources, so worktrees with different oracle sources do not evict each other.
#
# Environment:
#   EGRESS_GUARD_TOOLS_DIR  use this directory instead of the version-keyed cache
#   XDG_CACHE_HOME          cache root (default ~/.cache)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools/versions.env
. "$here/versions.env"

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] error: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH; the e2e tools are built from Go modules"

# Refuse to build binaries that disagree with versions.env: a bumped version
# without regenerated modules would otherwise silently build the old one.
check_pin() {
    local dir=$1 module=$2 version=$3
    grep -Eq "^(require )?[[:space:]]*${module//./\\.} ${version//./\\.}( |$)" "$here/$dir/go.mod" ||
        die "tools/$dir/go.mod does not pin $module $version (tools/versions.env); run tools/gen-modules.sh"
}
check_pin kube k8s.io/kubernetes "$KUBERNETES_VERSION"
check_pin etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
check_pin helm helm.sh/helm/v3 "$HELM_VERSION"
check_pin meshsim istio.io/istio "$ISTIO_VERSION"
check_pin istio-inject istio.io/istio "$ISTIO_VERSION"

go_version=$(go env GOVERSION)
# Go 1.27 turns on encoding/json/v2 semantics, with which kube-apiserver <=1.36
# serves broken OpenAPI ("failed to download openapi" in kubectl). Opt out
# whenever the toolchain is 1.27 or newer.
go_minor=$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$go_version")
if [[ $go_minor =~ ^[0-9]+$ ]] && ((go_minor >= 27)); then
    export GOEXPERIMENT=${GOEXPERIMENT:+$GOEXPERIMENT,}nojsonv2
fi
# The tool modules are self-contained; an enclosing go.work must not change them.
export GOWORK=off CGO_ENABLED=0

cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/egress-guard/tools
bindir=${EGRESS_GUARD_TOOLS_DIR:-$cache_root/$KUBERNETES_VERSION}

# build_meshsim -> path of the oracle binary, built if missing. A test binary:
# Istio's simulation wants a *testing.T. Serialised by its own lock so a
# pytest session waiting for it never waits for a kube-apiserver build.
build_meshsim() {
    local src_hash dir
    src_hash=$(cd "$here/meshsim" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
    dir=$cache_root/meshsim-$ISTIO_VERSION-$src_hash
    mkdir -p "$dir"
    (
        exec 8>"$dir/.lock"
        if command -v flock >/dev/null; then
            flock 8
        fi
        local stamp
        stamp=$(printf '%s\n' "$go_version" "${GOEXPERIMENT:-}" "$ISTIO_VERSION" "$src_hash" | sha256sum | cut -d' ' -f1)
        if [[ -x $dir/meshsim && -f $dir/.stamp && $(cat "$dir/.stamp") == "$stamp" ]]; then
            log "meshsim: up to date"
            touch "$dir"
            exit 0
        fi
        log "building meshsim from tools/meshsim (cold builds take ~5 min)..."
        local start=$SECONDS
        (cd "$here/meshsim" && go test -c -mod=readonly -trimpath -buildvcs=false \
            -ldflags "-s -w" -o "$dir/meshsim.tmp" .) || {
            rm -f "$dir/meshsim.tmp"
            die "building meshsim failed"
        }
        mv -f "$dir/meshsim.tmp" "$dir/meshsim"
        printf '%s\n' "$stamp" >"$dir/.stamp"
        log "built meshsim in $((SECONDS - start))s"
        # each source edit leaves a ~130 MB binary behind; drop those unused for a week
        find "$cache_root" -maxdepth 1 -name 'meshsim-*' -type d -mtime +7 \
            -exec rm -rf {} + 2>/dev/null || true
    ) || exit 1
    printf '%s\n' "$dir/meshsim"
}

if [[ ${1:-} == meshsim ]]; then
    build_meshsim
    exit 0
fi

mkdir -p "$bindir"
# Half-finished outputs of an interrupted build are never reused.
trap 'rm -rf "$bindir"/.build.*' EXIT

# Serialise concurrent builds (make tools + a pytest session, xdist workers):
# two cold kube-apiserver builds at once would need twice the memory for nothing.
exec 9>"$bindir/.lock"
if command -v flock >/dev/null; then
    flock 9
fi

# stamp NAME PARTS... -> a hash of everything that determines the output.
stamp_of() {
    local mod_dir=$1
    shift
    {
        printf '%s\n' "$go_version" "${GOEXPERIMENT:-}" "$@"
        if [[ -n $mod_dir ]]; then
            cat "$here/$mod_dir/go.mod" "$here/$mod_dir/go.sum"
            # Modules with sources of their own (istio-inject) rebuild when those change.
            local src
            for src in "$here/$mod_dir"/*.go; do
                if [[ -f $src ]]; then cat "$src"; fi
            done
        fi
    } | sha256sum | cut -d' ' -f1
}

up_to_date() {
    local stamp=$1
    shift
    local f
    for f in "$@"; do
        [[ -x $bindir/$f ]] || return 1
    done
    [[ -f $bindir/.stamp-$1 && $(cat "$bindir/.stamp-$1") == "$stamp" ]]
}

# build MOD_DIR LDFLAGS NAME=PACKAGE...
build() {
    local mod_dir=$1 ldflags=$2
    shift 2
    local names=() pkgs=() spec
    for spec in "$@"; do
        names+=("${spec%%=*}")
        pkgs+=("${spec#*=}")
    done
    local stamp
    stamp=$(stamp_of "$mod_dir" "$ldflags" "$@")
    if up_to_date "$stamp" "${names[@]}"; then
        log "${names[*]}: up to date"
        return
    fi
    log "building ${names[*]} from tools/$mod_dir (cold builds take minutes)..."
    local start=$SECONDS tmp
    tmp=$(mktemp -d "$bindir/.build.XXXXXX")
    local i
    for i in "${!names[@]}"; do
        # -mod=readonly: go.sum is the source of truth; never resolve anew in CI.
        # One package per invocation (-o FILE), the shared GOCACHE makes the
        # second binary of a module cheap.
        (cd "$here/$mod_dir" && go build -mod=readonly -trimpath -buildvcs=false \
            -ldflags "-s -w $ldflags" -o "$tmp/${names[$i]}" "${pkgs[$i]}") || {
            rm -rf "$tmp"
            die "building ${names[$i]} failed"
        }
    done
    for i in "${!names[@]}"; do
        mv -f "$tmp/${names[$i]}" "$bindir/${names[$i]}"
    done
    rm -rf "$tmp"
    printf '%s\n' "$stamp" >"$bindir/.stamp-${names[0]}"
    log "built ${names[*]} in $((SECONDS - start))s"
}

# Version metadata the upstream release builds inject (hack/lib/version.sh);
# without it the binaries report v0.0.0-master, which breaks kubeVersion checks
# (helm charts) and version-skew warnings.
k8s_minor=$(cut -d. -f2 <<<"$KUBERNETES_VERSION")
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1"
    k8s_ldflags+=" -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
    k8s_ldflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
etcd_ldflags=""
helm_ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
helm_ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
# helm's Makefile stamps the Kubernetes version `helm lint/template` assume (and check a
# chart's kubeVersion against) from the client-go it was built with: v0.MINOR.x -> 1.MINOR.
# Without it helm assumes v1.20 and refuses charts that need a newer cluster.
helm_client_go=$(sed -nE 's/^[[:space:]]*k8s\.io\/client-go v0\.([0-9]+)\..*/\1/p' "$here/helm/go.mod")
[[ $helm_client_go =~ ^[0-9]+$ ]] || die "tools/helm/go.mod names no k8s.io/client-go v0.MINOR"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_client_go"
done

# The first package of each list determines the stamp name.
build etcd "$etcd_ldflags" etcd=go.etcd.io/etcd/server/v3
build kube "$k8s_ldflags" \
    kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver kubectl=k8s.io/kubernetes/cmd/kubectl
build helm "$helm_ldflags" helm=helm.sh/helm/v3/cmd/helm
# Istio's sidecar injection webhook (pkg/kube/inject) with istiod's chart-rendered
# template, served by the e2e harness so Pods are injected as in a real cluster.
build istio-inject "" istio-inject=.
build_meshsim >/dev/null

# module_dir MODULE@VERSION -> the module's directory in the module cache (downloaded
# and verified against go.sum data / the checksum database like any dependency).
module_dir() {
    local json dir
    # Run outside any module so the module cache is used directly.
    json=$(cd "$bindir" && GOFLAGS=-mod=mod go mod download -json "$1") || true
    dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
    [[ -n $dir ]] || die "go mod download $1 failed: $(sed -n 's/^[[:space:]]*"Error": "\(.*\)",$/\1/p' <<<"$json")"
    printf '%s\n' "$dir"
}

# manifest OUT MODULE VERSION FILE_GLOB... : concatenates files of a module (paths
# relative to its root, globs allowed) into OUT next to the binaries.
manifest() {
    local out=$1 module=$2 version=$3
    shift 3
    local stamp
    stamp=$(stamp_of "" "$module@$version" "$@")
    if [[ -f $bindir/$out && -f $bindir/.stamp-$out && $(cat "$bindir/.stamp-$out") == "$stamp" ]]; then
        log "$out: up to date"
        return
    fi
    log "fetching $out from $module@$version..."
    local dir pattern file found=0
    dir=$(module_dir "$module@$version")
    : >"$bindir/$out.tmp"
    for pattern in "$@"; do
        for file in "$dir"/$pattern; do
            [[ -f $file ]] || die "$module@$version has no $pattern"
            { cat "$file"; printf '\n---\n'; } >>"$bindir/$out.tmp"
            found=$((found + 1))
        done
    done
    mv -f "$bindir/$out.tmp" "$bindir/$out"
    printf '%s\n' "$stamp" >"$bindir/.stamp-$out"
    log "$out: $found file(s)"
}

# Istio CRDs: the generated manifest shipped in the istio.io/api module.
manifest istio-crds.yaml istio.io/api "$ISTIO_API_VERSION" \
    kubernetes/customresourcedefinitions.gen.yaml
# Gateway API CRDs (standard channel), without its ValidatingAdmissionPolicy.
manifest gateway-api-crds.yaml sigs.k8s.io/gateway-api "$GATEWAY_API_VERSION" \
    'config/crd/standard/gateway.networking.k8s.io_[!v]*.yaml'

printf '%s\n' "$bindir"
