"""Mutation check of the README's Guarantees table: break each guarantee on purpose and see the
tests named as its proof fail.

    .venv/bin/python -m bench.mutations            # every mutation (a few minutes)
    .venv/bin/python -m bench.mutations retry      # only mutations whose name contains "retry"
    .venv/bin/python -m bench.mutations --list     # the mutations, without running anything

Run by hand, not by `make test` (each mutation runs its tests against a fresh Azurite).

Each mutation is (file, exact old snippet, new snippet, tests that must fail). The working tree
is never touched: the repository is copied to a scratch directory (without .git, .venv and
node_modules, which is linked), each mutation is applied there alone, its tests are run, and the
file is restored in a `finally` before the next one (so on an exception or Ctrl-C too); the
scratch copy is removed at the end. First the named tests run unmutated (the baseline): they
must pass, or a failure under a mutation would prove nothing.

A snippet that is no longer in its file (the code changed) is reported as "snippet not found":
update the mutation. Exit status 0 only if the baseline passes and every named test fails under
every mutation.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TIMEOUT = 900  # seconds per pytest run

# The proofs named in README.md, section Guarantees.
GARBAGE = "tests/test_ingest.py::test_garbage_events_are_dead_lettered_and_the_rest_is_stored"
CRAFTED = "tests/test_reliability.py::test_crafted_inputs_become_rows_or_dead_letters"
PARSER_BUG = (
    "tests/test_reliability.py::test_a_parser_bug_dead_letters_the_record_and_logs_only_where"
)
FUZZ = "tests/test_reliability.py::test_fuzz_batches_never_raise_and_account_for_every_record"
DUPLICATE = "tests/test_ingest.py::test_duplicate_delivery_leaves_one_row_and_no_new_blob"
ORDER = "tests/test_join.py::test_every_delivery_order_and_cut_gives_identical_rows"
FAULTS = "tests/test_reliability.py::test_faults_on_every_request_lose_nothing"
THROTTLED = "tests/test_reliability.py::test_throttled_storage_is_retried_no_sooner_than_it_asks"
OVER_CAP = (
    "tests/test_reliability.py::"
    "test_throttled_longer_than_the_cap_raises_at_once_and_the_redelivery_stores"
)
RETRY_AFTER = (
    "tests/test_reliability.py::test_retry_after_reads_seconds_http_dates_and_milliseconds"
)
RESTART = "tests/test_reliability.py::test_azurite_stopped_and_restarted_mid_batch"
DOWN = "tests/test_ingest.py::test_storage_down_raises_so_the_trigger_retries"
PARKED = "tests/test_reliability.py::test_a_batch_that_keeps_failing_is_parked_and_replayed_later"
LIMITS = "tests/test_limits.py"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    Mutation(
        "rows never written (write_rows returns without writing)",
        "pipeline/store.py",
        "        groups: dict[str, list[Row]] = defaultdict(list)\n",
        "        return WriteStats(created=len(items))\n"
        "        groups: dict[str, list[Row]] = defaultdict(list)\n",
        (GARBAGE, CRAFTED, FAULTS, RESTART, DOWN),
    ),
    Mutation(
        "transform raises (not a storage error)",
        "pipeline/ingest.py",
        "    plan = plan_batch(events, cfg)\n    blob = archive_plan(plan)",
        "    plan = plan_batch(events, cfg)\n    1 / 0  # noqa\n    blob = archive_plan(plan)",
        (DOWN, RESTART),
    ),
    Mutation(
        "a failed delivery is acknowledged (exception swallowed)",
        "pipeline/ingest.py",
        "            raise  # not acknowledged: the trigger's retry policy delivers it again\n",
        "            return BatchResult()\n",
        (DOWN, RESTART),
    ),
    Mutation(
        # With storage wholly down the parking fails too and raises: only DOWN can tell.
        "a failed delivery is parked at once (not raised)",
        "pipeline/ingest.py",
        "        if attempt < max_retries:\n",
        "        if False:\n",
        (DOWN,),
    ),
    Mutation(
        "dead letters dropped (put_dead_letter does nothing)",
        "pipeline/store.py",
        "        b = dead_letter_blob(dead)\n",
        "        return True\n        b = dead_letter_blob(dead)\n",
        (GARBAGE, CRAFTED, PARKED, PARSER_BUG),
    ),
    Mutation(
        "a parser failure drops the record (no dead letter)",
        "pipeline/ingest.py",
        "    plan.parser_errors += 1\n",
        "    plan.parser_errors += 1\n    return\n",
        (PARSER_BUG,),
    ),
    Mutation(
        "a parser failure logs the exception's message (record content)",
        "pipeline/ingest.py",
        '"parser error on %s record %s: %s at %s", event.origin, index, type(exc).__name__, where',
        '"parser error on %s record %s: %s at %s", event.origin, index, exc, where',
        (PARSER_BUG,),
    ),
    Mutation(
        "a parser bug (on records with time and properties)",
        "pipeline/ingest.py",
        "        authorization = attribution.authorization_of(record)\n",
        "        authorization = attribution.authorization_of(record)\n"
        '        if "time" in record and "properties" in record:\n'
        '            raise KeyError("a parser bug")\n',
        (FUZZ,),
    ),
    Mutation(
        "archive blob not written",
        "pipeline/store.py",
        "        return self.create_blob(self.archive, blob.name, blob.data, "
        'content_type="application/gzip")\n',
        "        return True\n",
        (DUPLICATE, FAULTS),
    ),
    Mutation(
        "archive blob overwritten (not create-only)",
        "pipeline/store.py",
        "                overwrite=False,\n",
        "                overwrite=True,\n",
        (DUPLICATE,),
    ),
    Mutation(
        "duplicates not deduplicated (rid random)",
        "pipeline/ingest.py",
        "    rid = archived.rid if archived else archive.record_id(original)\n",
        "    rid = archived.rid if archived else "
        'archive.record_id(original + __import__("os").urandom(8))\n',
        (DUPLICATE, ORDER),
    ),
    Mutation(
        "unchanged rows rewritten",
        "pipeline/store.py",
        "                merged = rows.merge_into(current, state, self.cfg.shards)\n",
        "                merged = rows.merge_into(current, state, self.cfg.shards)"
        " or dict(current)\n",
        (DUPLICATE,),
    ),
    Mutation(
        "join depends on arrival order (the last preview offered wins)",
        "pipeline/join.py",
        "    if p is not None and (state.prompt_preview is None or "
        "p.rank <= state.prompt_preview.rank):\n",
        "    if p is not None:\n",
        (ORDER,),
    ),
    Mutation(
        "retry disabled (attempts=1)",
        "pipeline/store.py",
        "        self.attempts = cfg.storage_retries + 1\n",
        "        self.attempts = 1\n",
        (FAULTS, THROTTLED),
    ),
    Mutation(
        "Retry-After ignored",
        "pipeline/store.py",
        "                asked = retry_after(exc)\n",
        "                asked = 0.0\n",
        (THROTTLED, OVER_CAP),
    ),
    Mutation(
        "Retry-After over the cap slept for the cap (the old behaviour)",
        "pipeline/store.py",
        "                if asked > self.retry_cap:\n",
        "                asked = min(asked, self.retry_cap)\n"
        "                if asked > self.retry_cap:\n",
        (OVER_CAP,),
    ),
    Mutation(
        "Retry-After as an HTTP date not read",
        "pipeline/store.py",
        "            waits.append(when.timestamp() - (time.time() if now is None else now))\n",
        "            pass\n",
        (RETRY_AFTER, OVER_CAP),
    ),
    Mutation(
        "x-ms-retry-after-ms not read",
        "pipeline/store.py",
        '    for name, unit in (("x-ms-retry-after-ms", 0.001), ("retry-after-ms", 0.001)):\n',
        '    for name, unit in (("retry-after-ms", 0.001),):\n',
        (RETRY_AFTER, OVER_CAP),
    ),
    Mutation(
        "lost response: a blob already there is an error",
        "pipeline/store.py",
        "        except ResourceExistsError:\n            return False\n",
        "        except ResourceExistsError:\n            raise\n",
        (FAULTS, DUPLICATE),
    ),
    Mutation(
        "lost response: a row already there is an error",
        "pipeline/store.py",
        "                if not _is_conflict(exc):\n                    raise\n"
        "        return self._merge_chunk(pk, chunk, dry_run)\n",
        "                raise\n        return self._merge_chunk(pk, chunk, dry_run)\n",
        (FAULTS, DUPLICATE),
    ),
    Mutation(
        "parking disabled (last delivery claims to park, writes nothing)",
        "pipeline/ingest.py",
        "            parked = park_batch(events, cfg, store, reason)\n",
        "            parked = len(events)\n",
        (PARKED,),
    ),
    Mutation(
        "last delivery raises like the others (never parked)",
        "pipeline/ingest.py",
        "        if attempt < max_retries:\n",
        "        if attempt <= max_retries:\n",
        (PARKED,),
    ),
    Mutation(
        "clipping disabled (limits.fit returns the entity as is)",
        "pipeline/limits.py",
        "    clipped: list[str] = list(clipped_before or [])\n",
        "    return entity\n    clipped: list[str] = list(clipped_before or [])\n",
        (LIMITS,),
    ),
    Mutation(
        "RowKey escaping disabled",
        "pipeline/rows.py",
        "    if _FORBIDDEN_KEY_RE.search(correlation_id) is None:\n",
        "    if True:\n",
        (CRAFTED,),
    ),
]


# --- running --------------------------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    pass


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted  # unwinds through the `finally` blocks that restore files


@contextmanager
def scratch_copy() -> Iterator[Path]:
    """The repository without .git and caches, with node_modules linked (Azurite)."""
    top = Path(tempfile.mkdtemp(prefix="mutations-"))
    try:
        root = top / "repo"
        shutil.copytree(
            REPO,
            root,
            ignore=shutil.ignore_patterns(
                ".git",
                ".venv",
                ".venv-*",
                "node_modules",
                "__pycache__",
                ".pytest_cache",
                ".ruff_cache",
                ".hypothesis",
                "out",
            ),
            symlinks=True,
        )
        if (REPO / "node_modules").exists():
            (root / "node_modules").symlink_to(REPO / "node_modules")
        yield root
    finally:
        shutil.rmtree(top, ignore_errors=True)


@contextmanager
def mutated(root: Path, m: Mutation) -> Iterator[str | None]:
    """Apply `m` in the copy; yields None when applied, else why it could not be. The file is
    restored on the way out, whatever happened."""
    path = root / m.file
    if not path.exists():
        yield f"file {m.file} not found"
        return
    original = path.read_text()
    count = original.count(m.old)
    if count != 1:
        yield "snippet not found" if count == 0 else f"snippet found {count} times"
        return
    source = original.replace(m.old, m.new, 1)
    try:
        compile(source, str(path), "exec")
    except SyntaxError as exc:
        yield f"mutation does not compile: {exc}"
        return
    try:
        path.write_text(source)
        yield None
    finally:
        path.write_text(original)


def run_tests(root: Path, tests: tuple[str, ...], cache: Path) -> dict[str, str]:
    """pytest on `tests` in `root`: outcome per named test or file (FAILED, ERROR, passed,
    skipped, not run), from the JUnit report."""
    report = cache / "report.xml"
    report.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(cache / "pyc"), PYTHONDONTWRITEBYTECODE="1")
    cmd = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    cmd += ["-o", "addopts=", *tests]
    with open(cache / "pytest.log", "w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=TIMEOUT)
        except BaseException:
            # Ctrl-C reached pytest too (same process group); SIGTERM did not: pass it on.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    cases: list[tuple[str, str]] = []
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            module = case.get("classname", "").replace(".", "/") + ".py"
            name = case.get("name", "").split("[", 1)[0]
            outcome = "passed"
            for child in case:
                if child.tag == "failure":
                    outcome = "FAILED"
                elif child.tag == "error" and outcome != "FAILED":
                    outcome = "ERROR"
                elif child.tag == "skipped" and outcome == "passed":
                    outcome = "skipped"
            cases.append((f"{module}::{name}", outcome))
    if not cases:
        tail = (cache / "pytest.log").read_text(errors="replace").splitlines()[-15:]
        print("  pytest ran no test:\n    " + "\n    ".join(tail), flush=True)
    results = {}
    for test in tests:
        mine = [o for nodeid, o in cases if nodeid == test or nodeid.startswith(test + "::")]
        for outcome in ("FAILED", "ERROR", "passed", "skipped"):
            if outcome in mine:
                results[test] = outcome
                break
        else:
            results[test] = "not run"
    return results


def short(test: str) -> str:
    return test.removeprefix("tests/")


def main(argv: list[str]) -> int:
    names = [a.lower() for a in argv if not a.startswith("-")]
    selected = [m for m in MUTATIONS if not names or any(n in m.name.lower() for n in names)]
    if "--list" in argv:
        for m in MUTATIONS:
            print(f"{m.name}  [{m.file}]  → {', '.join(short(t) for t in m.tests)}")
        return 0
    signal.signal(signal.SIGTERM, _on_sigterm)
    problems = 0
    rows: list[tuple[str, str, str]] = []
    started = time.monotonic()
    with scratch_copy() as root, tempfile.TemporaryDirectory(prefix="mutations-run-") as tmp:
        cache = Path(tmp)
        named = tuple(dict.fromkeys(t for m in selected for t in m.tests))
        print(f"baseline: {len(named)} tests unmutated ...", flush=True)
        base = run_tests(root, named, cache)
        for test, outcome in base.items():
            if outcome != "passed":
                problems += 1
                rows.append(("(baseline, no mutation)", short(test), f"{outcome} (should pass)"))
        for i, m in enumerate(selected, 1):
            print(f"[{i}/{len(selected)}] {m.name} ...", flush=True)
            with mutated(root, m) as trouble:
                if trouble is not None:
                    problems += 1
                    rows.append((m.name, f"{m.file}: {trouble}", "NOT RUN"))
                    continue
                results = run_tests(root, m.tests, cache)
            for test in m.tests:
                outcome = results[test]
                if outcome in ("FAILED", "ERROR"):
                    verdict = outcome
                else:
                    problems += 1
                    verdict = f"{outcome} (should fail)"
                rows.append((m.name, short(test), verdict))
    widths = [max(len(r[i]) for r in [("Mutation", "Test", "Result"), *rows]) for i in range(3)]
    print()
    for r in [("Mutation", "Test", "Result"), tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    minutes = (time.monotonic() - started) / 60
    print(f"\n{len(selected)} mutations, {problems} problem(s), {minutes:.1f} min")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
