#!/usr/bin/env bash
# Regenerates go.mod's replace directives for Kubernetes' staging modules from k8s.io/kubernetes's
# own go.mod, as the module proxy serves it: that go.mod points each k8s.io/X it requires at
# v0.0.0 to ./staging/src/k8s.io/X, a replace Go ignores in a dependency, so this module must say
# `k8s.io/X => k8s.io/X v0.<minor>.<patch>` for each of them itself. Run it after changing
# K8S_VERSION (then `go mod tidy`); build.sh checks that go.mod still matches its output.
# Usage: tests/kube/gen-replace.sh [--check]
set -euo pipefail
cd "$(dirname "$0")"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

k8s=$(sed -n 's/^K8S_VERSION=//p' versions.env)
# v1.37.2 -> v0.37.2: the staging modules are tagged with the same minor and patch.
staging=v0.${k8s#v1.}

mod=$(go mod download -json "k8s.io/kubernetes@$k8s" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -f "$mod" ] || { echo "gen-replace: no go.mod for k8s.io/kubernetes@$k8s" >&2; exit 1; }

# Every `k8s.io/X => ./staging/src/k8s.io/X` line of its replace block.
mapfile -t modules < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/.*#\1#p' "$mod" | sort -u)
[ ${#modules[@]} -gt 20 ] || { echo "gen-replace: found only ${#modules[@]} staging modules in $mod" >&2; exit 1; }

want=$(printf '%s => %s %s\n' $(for m in "${modules[@]}"; do echo "$m $m $staging"; done))
have=$(go mod edit -print |
  sed -n 's#^\(replace\)\{0,1\}[[:space:]]*\(k8s\.io/[^ ]*\) => \(k8s\.io/[^ ]*\) \(v[^ ]*\)$#\2 => \3 \4#p' | sort -u)

if [ "${1:-}" = --check ]; then
  if [ "$want" != "$have" ]; then
    echo "tests/kube/go.mod's staging replaces do not match k8s.io/kubernetes@$k8s; run tests/kube/gen-replace.sh && (cd tests/kube && go mod tidy)" >&2
    diff <(echo "$want") <(echo "$have") >&2 || true
    exit 1
  fi
  exit 0
fi

# Drop the old k8s.io replaces, then add one per staging module.
for old in $(echo "$have" | awk '{print $1}'); do go mod edit -dropreplace="$old"; done
for m in "${modules[@]}"; do go mod edit -replace="$m=$m@$staging"; done
echo "gen-replace: ${#modules[@]} staging modules of k8s.io/kubernetes@$k8s pinned to $staging" >&2
