"""`python -m pipeline settings`: the one list of settings (pipeline/settings.py) as the
docs' Markdown table (`--markdown`, the default) or the local.settings sample; `--write`
regenerates the files made from it (local.settings.sample.json and infra/app-settings.json)."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson

from pipeline.settings import SETTINGS, azure_defaults, sample_values

REPO = Path(__file__).resolve().parents[2]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("settings", help="list the settings (docs table or local.settings sample)")
    p.add_argument("--format", choices=("markdown", "sample"), default="markdown")
    p.add_argument(
        "--markdown",
        dest="format",
        action="store_const",
        const="markdown",
        help="the Markdown table of the docs (the default; same as --format markdown)",
    )
    p.add_argument(
        "--write",
        action="store_true",
        help="regenerate local.settings.sample.json and infra/app-settings.json",
    )
    p.set_defaults(func=cmd_settings)


def cmd_settings(args: argparse.Namespace) -> int:
    if args.write:
        (REPO / "local.settings.sample.json").write_text(sample_json())
        (REPO / "infra" / "app-settings.json").write_text(
            orjson.dumps(azure_defaults(), option=orjson.OPT_INDENT_2).decode() + "\n"
        )
        print("updated local.settings.sample.json and infra/app-settings.json")
    elif args.format == "sample":
        print(sample_json(), end="")
    else:
        print(settings_markdown())
    return 0


def sample_json() -> str:
    doc = {"IsEncrypted": False, "Values": sample_values()}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def settings_markdown() -> str:
    lines = [
        "| Setting | Default | Read by | In Azure (infra/) | What it does |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(empty)"
        if s.azure == "":
            azure = "not set"
        elif s.azure:
            azure = f"`{s.azure}`"
        else:
            azure = "same name"
        lines.append(f"| `{s.name}` | {default} | {s.scope} | {azure} | {s.doc} |")
    return "\n".join(lines)
