"""Validate the infrastructure code offline (no Bicep CLI here): every .bicep parses, the APIM
policy XML is well-formed, and checkov passes with the skip list of .checkov.yaml.

    .venv/bin/python infra/validate.py [--checkov PATH]

checkov exits 0 even when a file does not parse, so its JSON summary is read instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

INFRA = Path(__file__).resolve().parent


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def parse_bicep() -> list[str]:
    from pycep import BicepParser

    errors = []
    parser = BicepParser()
    for path in bicep_files():
        try:
            parser.parse(file_path=path)
        except Exception as exc:  # noqa: BLE001 - every parse error is reported
            errors.append(f"{path.relative_to(INFRA)}: {type(exc).__name__}: {str(exc)[:300]}")
    return errors


def parse_xml() -> list[str]:
    errors = []
    for path in sorted((INFRA / "apim").glob("*.xml")):
        try:
            ET.parse(path)
        except ET.ParseError as exc:
            errors.append(f"{path.relative_to(INFRA)}: not well-formed XML: {exc}")
    return errors


def run_checkov(checkov: str) -> list[str]:
    proc = subprocess.run(
        [checkov, "--config-file", str(INFRA / ".checkov.yaml"), "-d", str(INFRA), "-o", "json"],
        capture_output=True,
        text=True,
    )
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return [f"checkov printed no JSON (exit {proc.returncode}): {proc.stderr[-500:]}"]
    reports = doc if isinstance(doc, list) else [doc]
    errors = []
    for report in reports:
        summary = report.get("summary", {})
        print(f"checkov {report.get('check_type', 'bicep')}: {summary}")
        if summary.get("parsing_errors"):
            errors.append(f"checkov could not parse: {report['results'].get('parsing_errors')}")
        for check in report.get("results", {}).get("failed_checks", []):
            errors.append(
                f"checkov {check['check_id']} ({check['check_name']}): {check['file_path']} "
                f"{check['resource']}"
            )
        if summary.get("resource_count", 0) == 0:
            errors.append("checkov found no resources: the scan did not run")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--checkov", default=str(INFRA.parent / ".venv-checkov" / "bin" / "checkov")
    )
    args = parser.parse_args()
    errors = parse_bicep()
    print(f"bicep: {len(bicep_files())} files parsed, {len(errors)} errors")
    xml_errors = parse_xml()
    print(
        f"policy XML: {len(list((INFRA / 'apim').glob('*.xml')))} files, {len(xml_errors)} errors"
    )
    errors += xml_errors + run_checkov(args.checkov)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
