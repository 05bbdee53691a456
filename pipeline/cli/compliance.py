"""`python -m pipeline verify`: the archive of a range of days against its manifests."""

from __future__ import annotations

import argparse
import sys

from pipeline.cli import options
from pipeline.compliance.verify import verify


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "verify", help="check the archive against its daily manifests (tamper evidence)"
    )
    p.add_argument("--from", dest="from_day", type=options.day, required=True, metavar="DAY")
    p.add_argument("--to", dest="to_day", type=options.day, required=True, metavar="DAY")
    options.add_storage(p)
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    if args.to_day < args.from_day:
        print("error: --to is before --from", file=sys.stderr)
        return 2
    cfg = options.config(args)
    report = verify(options.ensured_store(cfg), args.from_day, args.to_day)
    for problem in report.problems:
        print(f"PROBLEM {problem}")
    print(
        f"{args.from_day} to {args.to_day}: {report.manifests} manifests, {report.blobs} blobs, "
        f"{report.rows} rows checked; "
        + (f"{len(report.problems)} problems" if report.problems else "no problem")
    )
    return 1 if report.problems else 0
