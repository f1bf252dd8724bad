#!/usr/bin/env bash
# Validates the manifests in deploy/ offline against the Kubernetes OpenAPI schemas, with
# kubernetes-validate (from PyPI; it ships the schemas, so nothing but PyPI is reached, and only
# on the first run). Without kubectl the kustomization is not rendered: it only lists resources,
# so each listed file is validated directly, and a deploy/*.yaml file it does not list fails.
# The app recipes in deploy/recipes/ are validated as well.
#
#     bash deploy/validate.sh
#
# The validator lives in target/validate-venv (created once; later runs reuse it).
set -euo pipefail
cd "$(dirname "$0")/.."

VALIDATOR_VERSION="1.37.0"
# The oldest Kubernetes version the manifests support, and the newest the validator ships.
KUBERNETES_VERSIONS=("1.30.0" "1.37.0")
VENV="target/validate-venv"

fail() {
    echo "deploy/validate.sh: $*" >&2
    exit 1
}

if ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -qF "$VALIDATOR_VERSION"; then
    echo "== installing kubernetes-validate $VALIDATOR_VERSION into $VENV =="
    python3 -m venv "$VENV" || fail "cannot create $VENV (python3 -m venv; apt-get install python3-venv)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$VALIDATOR_VERSION" \
        || fail "cannot install kubernetes-validate==$VALIDATOR_VERSION from PyPI"
fi

# The resources: list of deploy/kustomization.yaml, one path per line.
mapfile -t resources < <("$VENV/bin/python" - <<'PY'
import sys
import yaml

with open("deploy/kustomization.yaml") as f:
    kustomization = yaml.safe_load(f)
for resource in kustomization.get("resources") or []:
    print(resource)
PY
) || fail "deploy/kustomization.yaml does not parse"
[ "${#resources[@]}" -gt 0 ] || fail "deploy/kustomization.yaml lists no resources"

files=()
for resource in "${resources[@]}"; do
    [ -f "deploy/$resource" ] || fail "deploy/kustomization.yaml lists $resource, which is not a file in deploy/"
    files+=("deploy/$resource")
done
for path in deploy/*.yaml; do
    name="${path#deploy/}"
    [ "$name" = "kustomization.yaml" ] && continue
    printf '%s\n' "${resources[@]}" | grep -qxF "$name" \
        || fail "$path is not listed under resources: in deploy/kustomization.yaml"
done

# The app recipes (deploy/recipes/, applied by hand in the app's namespace) are validated too.
recipes=(deploy/recipes/*.yaml)
[ -e "${recipes[0]}" ] || recipes=()

for version in "${KUBERNETES_VERSIONS[@]}"; do
    echo "== deploy/kustomization.yaml resources and deploy/recipes/ against Kubernetes $version (strict) =="
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "${files[@]}" "${recipes[@]}" \
        || fail "manifests do not validate against Kubernetes $version (see above)"
done

# The monitoring examples use the Prometheus operator's CRDs, for which no schema ships: the
# validator checks that they parse as Kubernetes objects and skips the schema with a warning.
echo "== deploy/monitoring (CRDs: parsed, schema skipped) =="
"$VENV/bin/kubernetes-validate" --strict --quiet -k "${KUBERNETES_VERSIONS[-1]}" deploy/monitoring/*.yaml \
    || fail "deploy/monitoring/*.yaml do not parse as Kubernetes objects"

echo "deploy/validate.sh: ${#files[@]} manifests and ${#recipes[@]} recipes valid against Kubernetes ${KUBERNETES_VERSIONS[*]}"
