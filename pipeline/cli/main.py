"""`python -m pipeline`: the parser, one sub-command group per module of this package, and
`main`. Every command calls the same functions as the Function App's triggers."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipeline import __version__
from pipeline.cli import (
    budgets,
    chargeback,
    compliance,
    demo,
    doctor,
    export,
    kpi,
    replay,
    send,
    settings,
    show,
)
from pipeline.kpi.attribution import AttributionError
from pipeline.kpi.budgets import BudgetsError
from pipeline.settings import SettingsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Audit and usage pipeline for Azure OpenAI traffic through APIM.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    replay.add_parser(sub)
    show.add_parser(sub)
    demo.add_parser(sub)
    kpi.add_parsers(sub)
    chargeback.add_parser(sub)
    budgets.add_parser(sub)
    export.add_parsers(sub)
    compliance.add_parser(sub)
    doctor.add_parser(sub)
    send.add_parser(sub)
    settings.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The CLI prints its own messages; library warnings would repeat them.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (SettingsError, AttributionError, BudgetsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `python -m pipeline ... | head`
        sys.stderr.close()
        return 0
