#!/usr/bin/env python3
"""Writes a large trivy JSON report (SchemaVersion 2) for the scan-image benchmark.

Findings are spread over one OS target and several language targets, with the
fields trivy fills for real images (CVSS from two vendors, references, CWE,
dates), so the size per finding (~500 bytes) matches real reports.
"""
import argparse
import json
import random

INDENT = None  # compact: ~560 bytes a finding, so 200,000 findings make ~110 MB
SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]
WEIGHTS = [5, 20, 40, 30, 5]


def vuln(i, rng, lang):
    cve = f"CVE-{2015 + i % 10}-{10000 + i}"
    pkg = f"pkg{i % 5000}" if not lang else f"module-{i % 3000}"
    sev = rng.choices(SEVERITIES, WEIGHTS)[0]
    fixed = rng.random() < 0.7
    v = {
        "VulnerabilityID": cve,
        "PkgID": f"{pkg}@1.{i % 50}.{i % 7}",
        "PkgName": pkg,
        "InstalledVersion": f"1.{i % 50}.{i % 7}",
        "Status": "fixed" if fixed else "affected",
        "SeveritySource": "nvd",
        "PrimaryURL": f"https://avd.aquasec.com/nvd/{cve.lower()}",
        "Title": f"{pkg}: out-of-bounds read",
        "Description": "A flaw was found in %s. Crafted input can cause an out-of-bounds read." % pkg,
        "Severity": sev,
        "CVSS": {
            "nvd": {"V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:H", "V3Score": 9.1},
        },
        "References": [
            f"https://nvd.nist.gov/vuln/detail/{cve}",
        ],
        "PublishedDate": "2024-06-27T11:15:24.447Z",
    }
    if fixed:
        v["FixedVersion"] = f"1.{i % 50}.{i % 7 + 1}"
    if lang:
        v["PkgPath"] = f"app/node_modules/{pkg}/package.json"
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--findings", type=int, default=200_000)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rng = random.Random(42)
    os_n = a.findings * 7 // 10
    results = [{"Target": "registry.example.com/bench/app:1 (debian 12.5)", "Class": "os-pkgs", "Type": "debian",
                "Vulnerabilities": [vuln(i, rng, False) for i in range(os_n)]}]
    per_lang = (a.findings - os_n) // 3
    for k, (target, typ) in enumerate([("app/package-lock.json", "npm"), ("app/requirements.txt", "pip"),
                                       ("usr/local/bin/app", "gobinary")]):
        n = per_lang if k < 2 else a.findings - os_n - 2 * per_lang
        results.append({"Target": target, "Class": "lang-pkgs", "Type": typ,
                        "Vulnerabilities": [vuln(os_n + k * per_lang + i, rng, True) for i in range(n)]})
    report = {"SchemaVersion": 2, "CreatedAt": "2026-11-20T09:14:27Z",
              "ArtifactName": "registry.example.com/bench/app:1", "ArtifactType": "container_image",
              "Metadata": {"OS": {"Family": "debian", "Name": "12.5"}}, "Results": results,
              "Trivy": {"Version": "0.56.2"}}
    with open(a.out, "w") as f:
        json.dump(report, f, indent=INDENT)


if __name__ == "__main__":
    main()
