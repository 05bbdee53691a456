"""`sql`: DuckDB over an export, with views `calls`, `kpi` and `focus` (the Hive partition as
a `day` DATE column). Views read the files the manifests list, so a query sees whole days
only, never a file of a version being replaced. A blob export is first copied to a local
folder (DuckDB's Azure extension is downloaded at run time, which a closed network cannot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.export.columns import DATASETS
from pipeline.export.days import checked, manifest_day
from pipeline.store.exports import Target


def manifests(target: Target) -> tuple[list[dict[str, Any]], list[str]]:
    """Every day's manifest of an export (a folder or blobs: the same listing and reads), with
    only the entries the exporter could have written (`days.checked`), and what was left out."""
    out, problems = [], []
    for name in target.list("_manifests"):
        day = manifest_day(name)
        if day is None:
            problems.append(f"{target.describe()}: {name}: not a manifest the export writes")
            continue
        datasets, found = checked(target.read(name), day, f"{target.describe()}: {name}")
        problems += found
        out.append({"day": f"{day}", "datasets": datasets})
    return out, problems


def mirror(target: Target, names: list[str], to: Path) -> None:
    """Copy the listed files of `target` under `to` (same relative paths)."""
    root = to.resolve()
    for name in names:
        local = (to / name).resolve()
        # Names come from manifests (checked); a name that would land outside `to` is refused
        # all the same: the copy must not write where the export's writer chose.
        if not local.is_relative_to(root):
            raise ValueError(f"{name!r} is outside {to}")
        target.fetch(name, local)


def connect(root: Path, days: list[dict[str, Any]]) -> Any:
    """A DuckDB connection with a view per dataset over the files the manifests list."""
    import duckdb

    con = duckdb.connect()
    for dataset in DATASETS:
        files = [
            str(root / e["path"]) for m in days for e in (m.get("datasets") or {}).get(dataset, [])
        ]
        if not files:
            continue
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        con.execute(
            f"CREATE VIEW {dataset} AS SELECT * FROM read_parquet([{listed}], "
            "hive_partitioning = true, hive_types = {'day': DATE})"
        )
    return con


def query(con: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description] if cursor.description else []
    return columns, cursor.fetchall()
