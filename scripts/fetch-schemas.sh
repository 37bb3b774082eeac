#!/usr/bin/env bash
# Downloads the reference schemas the tests validate against into .schemas/
# (for a clone without ../shared/schemas). They belong to their publishers and
# are not committed.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .schemas/cyclonedx
fetch() { curl -fsSL --retry 3 -o ".schemas/$1" "$2"; echo "fetched $1"; }
fetch gitlab-ci.json https://gitlab.com/gitlab-org/gitlab/-/raw/master/app/assets/javascripts/editor/schema/ci.json
fetch gitlab-container-scanning-report-format-15.2.1.json https://gitlab.com/gitlab-org/security-products/security-report-schemas/-/raw/v15.2.1/dist/container-scanning-report-format.json
fetch gitlab-dependency-scanning-report-format-15.2.1.json https://gitlab.com/gitlab-org/security-products/security-report-schemas/-/raw/v15.2.1/dist/dependency-scanning-report-format.json
fetch sarif-schema-2.1.0.json https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json
fetch argocd-swagger.json https://raw.githubusercontent.com/argoproj/argo-cd/master/assets/swagger.json
# CycloneDX 1.6 and the two schemas it refers to by relative name (kept together).
for f in bom-1.6.schema.json spdx.schema.json jsf-0.82.schema.json; do
  fetch "cyclonedx/$f" "https://raw.githubusercontent.com/CycloneDX/specification/master/schema/$f"
done
