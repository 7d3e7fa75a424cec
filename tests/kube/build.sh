#!/usr/bin/env bash
# Builds the programs kaudit's kube tests run, from their Go modules (go.mod here), into one
# directory: kube-apiserver, kube-controller-manager and kubectl (k8s.io/kubernetes), etcd
# (go.etcd.io/etcd/server/v3) and helm (helm.sh/helm/v4). Static (CGO_ENABLED=0), with this
# machine's Go (GOTOOLCHAIN=local), with the version stamped in as each project's release build
# does (`kubectl version`, `etcd --version` and `helm version` tell the truth).
#
# Idempotent: a stamp records the inputs (go.mod, go.sum, versions.env, this script, the Go
# version); when it matches and every binary is there, it returns at once. Otherwise one
# `go build` builds all five; GOMODCACHE and GOCACHE make a rebuild after a fresh clone a matter
# of linking.
# Usage: tests/kube/build.sh [OUT_DIR]   (default: .tools/kube/bin at the repository root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../.tools/kube/bin}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
source ./versions.env

bins=(kube-apiserver kube-controller-manager kubectl etcd helm)
stamp=$({ cat go.mod go.sum versions.env build.sh; go version; } | sha256sum | cut -c1-16)
have_all() { for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if have_all && [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

./gen-replace.sh --check
# go.mod must require what versions.env names.
for want in "k8s.io/kubernetes $K8S_VERSION" "go.etcd.io/etcd/server/v3 $ETCD_VERSION" "helm.sh/helm/v4 $HELM_VERSION"; do
  grep -q "^[[:space:]]*$want\b" go.mod || { echo "build.sh: go.mod does not require $want (versions.env)" >&2; exit 1; }
done

# The release's own date, so that the same inputs give the same binaries.
date=$(go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ld=(-s -w)
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld+=("-X $pkg.gitVersion=$K8S_VERSION" "-X $pkg.gitMajor=1" "-X $pkg.gitMinor=$minor"
    "-X $pkg.gitCommit=unknown" "-X $pkg.gitTreeState=clean" "-X $pkg.buildDate=$date")
done
ld+=("-X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION")
ld+=("-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" "-X helm.sh/helm/v4/internal/version.metadata="
  "-X helm.sh/helm/v4/internal/version.gitCommit=unknown" "-X helm.sh/helm/v4/internal/version.gitTreeState=clean")

echo "==> building ${bins[*]} into $out (once; the first build takes a while)" >&2
start=$(date +%s)
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# One go build for all five: they share most packages and the scheduler keeps both cores busy.
# -X for a variable a program does not have is ignored, so one set of ldflags serves them all.
go build -trimpath -ldflags "${ld[*]}" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl \
  go.etcd.io/etcd/server/v3 \
  helm.sh/helm/v4/cmd/helm
# go build names the etcd server after its module path without the major version: "server".
mv "$tmp/server" "$tmp/etcd"
for b in "${bins[@]}"; do mv -f "$tmp/$b" "$out/$b"; done
echo "$stamp" >"$out/.stamp"
echo "==> kube binaries built in $(($(date +%s) - start))s" >&2
