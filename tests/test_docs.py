"""The README and docs/ say what the code does: the settings table, the commands, the links.

The settings table of docs/operations.md is generated; `UPDATE_DOCS=1` rewrites it (like
UPDATE_GOLDEN=1 in tests/test_golden.py). The rest is read from the text: every
`python -m pipeline ...` and `make ...` shown must run, every relative link must lead somewhere.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
from pathlib import Path

import pytest

from pipeline.cli import main as cli
from pipeline.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SETTINGS_BLOCK = re.compile(r"(<!-- settings:start -->\n)(.*?)(<!-- settings:end -->)", re.S)
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
INLINE = re.compile(r"(`+)(.+?)\1", re.S)
COMMAND = re.compile(r"python -m pipeline((?:[ \t]+(?:\\\n[ \t]*)?[^\s#|>;&]+)*)")
MAKE = re.compile(r"(?:^|[\s;&(])make[ \t]+([a-z][\w-]*)", re.M)
TARGET = re.compile(r"^([A-Za-z][\w.-]*)[ \t]*:(?!=)", re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
CLI_ROW = re.compile(r"^\| `([a-z][\w-]*)((?: [^`]*)?)` \|", re.M)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _code(text: str) -> list[str]:
    """Fenced blocks and inline code spans: where commands are shown."""
    fenced = [m.group(0) for m in FENCE.finditer(text)]
    rest = FENCE.sub("", text)
    return fenced + [m.group(2) for m in INLINE.finditer(rest)]


def _prose(text: str) -> str:
    """The text without fenced blocks (a `# comment` in a shell block is not a heading)."""
    return FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for m in HEADING.finditer(_prose(path.read_text())):
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _commands() -> dict[str, set[str]]:
    """Each command of `python -m pipeline` and its option strings, from the real parser."""
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    out = {name: _options(p) for name, p in sub.choices.items()}
    # A command with sub-commands (`budgets check`) is also checked as its own entry, with
    # only its own options: `budgets check --format` is wrong although `status` has one.
    for name, p in sub.choices.items():
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for nested_name, nested in action.choices.items():
                    out[f"{name} {nested_name}"] = {
                        o for a in nested._actions for o in a.option_strings
                    }
    return out


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """A command's option strings, those of its own sub-commands included (`budgets check`)."""
    found = {o for action in parser._actions for o in action.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                found |= _options(nested)
    return found


def _shown_nested() -> list[tuple[str, str, str, list[str]]]:
    """(page, command, sub-command, its --options) of every `python -m pipeline X Y ...` in
    the docs where Y is a sub-command of X (`budgets check --at ...`)."""
    commands = _commands()
    out = []
    for page in PAGES:
        for code in _code(page.read_text()):
            for m in COMMAND.finditer(code):
                words = m.group(1).replace("\\\n", " ").split()
                if len(words) > 1 and f"{words[0]} {words[1]}" in commands:
                    options = [w.split("=")[0] for w in words if w.startswith("--")]
                    out.append((_rel(page), words[0], words[1], options))
    return out


def _shown_commands() -> list[tuple[str, str, list[str]]]:
    """(page, command, its --options) of every `python -m pipeline ...` in the docs."""
    shown = []
    for page in PAGES:
        for code in _code(page.read_text()):
            for m in COMMAND.finditer(code):
                words = m.group(1).replace("\\\n", " ").split()
                if words:
                    options = [w.split("=")[0] for w in words if w.startswith("--")]
                    shown.append((_rel(page), words[0], options))
    return shown


def test_settings_table_is_generated_from_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["settings", "--format", "markdown"]) == 0
    table = capsys.readouterr().out.strip()
    text = OPERATIONS.read_text()
    block = SETTINGS_BLOCK.search(text)
    assert block, f"{_rel(OPERATIONS)} lost its <!-- settings:start/end --> markers"
    if os.environ.get("UPDATE_DOCS") == "1" and block.group(2).strip() != table:
        text = SETTINGS_BLOCK.sub(lambda m: m.group(1) + table + "\n" + m.group(3), text)
        OPERATIONS.write_text(text)
        block = SETTINGS_BLOCK.search(text)
        assert block
    assert block.group(2).strip() == table, (
        f"the settings table of {_rel(OPERATIONS)} is stale: regenerate it with "
        "UPDATE_DOCS=1 .venv/bin/pytest tests/test_docs.py"
    )
    for s in SETTINGS:
        assert f"`{s.name}`" in block.group(2), f"{s.name} missing from {_rel(OPERATIONS)}"


def test_every_command_shown_exists_with_its_options() -> None:
    commands = _commands()
    shown = _shown_commands()
    assert len({command for _, command, _ in shown}) >= 6, "the command pattern finds nothing"
    wrong = [
        f"{page}: python -m pipeline {command} {' '.join(options)}"
        for page, command, options in shown
        if command not in commands or not set(options) <= commands[command]
    ]
    assert not wrong, "commands or options the parser does not have:\n" + "\n".join(wrong)
    nested = [
        f"{page}: python -m pipeline {command} {sub} {' '.join(options)}"
        for page, command, sub, options in _shown_nested()
        if not set(options) <= commands[f"{command} {sub}"]
    ]
    wrong = nested
    assert not wrong, "commands or options the parser does not have:\n" + "\n".join(wrong)


def test_the_command_table_lists_real_commands_and_options() -> None:
    """The table of docs/cli.md names commands without `python -m pipeline` before them."""
    commands = _commands()
    rows = [
        _nested(commands, n, r) for n, r in CLI_ROW.findall((ROOT / "docs" / "cli.md").read_text())
    ]
    top = {name for name in commands if " " not in name}
    assert {name.split()[0] for name, _ in rows} == top, "docs/cli.md's table vs the parser"
    wrong = [
        f"{name}: {option}"
        for name, rest in rows
        for option in re.findall(r"--[a-z][\w-]*", rest)
        if option not in commands[name]
    ]
    assert not wrong, "options in docs/cli.md's table the parser does not have: " + str(wrong)


def _nested(commands: dict[str, set[str]], name: str, rest: str) -> tuple[str, str]:
    """(`budgets check`, its arguments) when `rest` starts with a sub-command of `name`."""
    words = rest.split()
    if words and f"{name} {words[0]}" in commands:
        return f"{name} {words[0]}", rest.split(words[0], 1)[1]
    return name, rest


def test_every_make_target_shown_exists() -> None:
    targets = set(TARGET.findall((ROOT / "Makefile").read_text()))
    shown = [
        (_rel(page), target)
        for page in PAGES
        for code in _code(page.read_text())
        for target in MAKE.findall(code)
    ]
    assert {"demo", "test", "bench"} <= {t for _, t in shown}, "the make pattern finds nothing"
    wrong = [f"{page}: make {target}" for page, target in shown if target not in targets]
    assert not wrong, "make targets the Makefile does not have:\n" + "\n".join(wrong)


def test_every_relative_link_and_anchor_exists() -> None:
    wrong = []
    count = 0
    for page in PAGES:
        for target in LINK.findall(_prose(page.read_text())):
            if re.match(r"[a-z][\w+.-]*:", target):
                continue  # https:, mailto: ...
            count += 1
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                wrong.append(f"{_rel(page)}: {target} (no such file)")
            elif anchor and (file.suffix != ".md" or anchor not in _anchors(file)):
                wrong.append(f"{_rel(page)}: {target} (no such heading)")
    assert count >= 10, "the link pattern finds nothing"
    assert not wrong, "broken links:\n" + "\n".join(wrong)


def _layout_paths() -> set[str]:
    """Paths named in the Layout table of docs/architecture.md; a bare name in a cell is
    beside the full path before it (`pipeline/cli/replay.py`, `runner.py`)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    layout = text[text.index("## Layout") :]
    paths: set[str] = set()
    for row in re.findall(r"^\| ([^|]+) \|", layout, re.M):
        folder = ""
        for name in re.findall(r"`([^`]+)`", row):
            if "/" in name.rstrip("/"):
                folder = name.rstrip("/").rpartition("/")[0]
                paths.add(name.rstrip("/"))
            else:
                paths.add(f"{folder}/{name}" if folder else name)
    return paths


def test_the_layout_table_follows_the_tree() -> None:
    paths = _layout_paths()
    missing = [p for p in sorted(paths) if not (ROOT / p).exists()]
    assert not missing, f"docs/architecture.md's Layout names what is not there: {missing}"
    modules = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "pipeline").rglob("*.py") if p.stem != "__init__"
    )
    unlisted = [m for m in modules if m not in paths]
    assert not unlisted, f"modules missing from docs/architecture.md's Layout: {unlisted}"


def _defines(path: Path, dotted: str) -> bool:
    """Whether the module at `path` defines `dotted` (a function, class, constant, or
    Class.method) at its top level."""
    body = ast.parse(path.read_text()).body
    for part in dotted.split("."):
        found = None
        for node in body:
            names = (
                [node.name]
                if isinstance(node, ast.FunctionDef | ast.ClassDef)
                else [
                    t.id
                    for t in getattr(node, "targets", [getattr(node, "target", None)])
                    if isinstance(t, ast.Name)
                ]
            )
            if part in names:
                found = node
        if found is None:
            return False
        body = getattr(found, "body", [])
    return True


def test_every_place_named_in_the_architecture_exists() -> None:
    """`pipeline/x/y.py` `name` in docs/architecture.md: the module defines that name."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    named = re.findall(r"`((?:pipeline/[\w/]+|function_app)\.py)`\s+`([A-Za-z_][\w.]*)`", text)
    assert len(named) >= 20, "the pattern finds nothing"
    wrong = [f"{p} {n}" for p, n in named if not (ROOT / p).exists() or not _defines(ROOT / p, n)]
    assert not wrong, "docs/architecture.md names what the code does not define:\n" + "\n".join(
        wrong
    )
