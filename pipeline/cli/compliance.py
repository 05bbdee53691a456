"""`python -m pipeline verify | erase | hold | release`: tamper evidence, erasure on the WORM
archive (crypto-shredding) and legal holds (compliance/)."""

from __future__ import annotations

import argparse
import sys

from pipeline.cli import options
from pipeline.common.render import terminal_text
from pipeline.compliance import erase as erasing
from pipeline.compliance.erase import CASE, Held, Subject
from pipeline.compliance.verify import verify
from pipeline.settings import SettingsError
from pipeline.store.holds import HoldExists


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "verify", help="check the archive against its daily manifests (tamper evidence)"
    )
    p.add_argument("--from", dest="from_day", type=options.day, required=True, metavar="DAY")
    p.add_argument("--to", dest="to_day", type=options.day, required=True, metavar="DAY")
    options.add_storage(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "erase",
        help="erase a subject's content: destroy its records' keys, blank its previews",
    )
    _subject(p, call=True)
    p.add_argument("--from", dest="from_day", type=options.day, metavar="DAY")
    p.add_argument("--to", dest="to_day", type=options.day, metavar="DAY")
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be erased; change nothing"
    )
    options.add_storage(p)
    p.set_defaults(func=cmd_erase)

    p = sub.add_parser("hold", help="put a subject's data under legal hold (erase refuses it)")
    p.add_argument("--case", required=True, help="name of the case (letters, digits, . _ - space)")
    _subject(p, call=False)
    p.add_argument("--from", dest="from_day", type=options.day, required=True, metavar="DAY")
    p.add_argument("--to", dest="to_day", type=options.day, required=True, metavar="DAY")
    options.add_storage(p)
    p.set_defaults(func=cmd_hold)

    p = sub.add_parser("release", help="release a legal hold")
    p.add_argument("--case", required=True)
    options.add_storage(p)
    p.set_defaults(func=cmd_release)


def _subject(p: argparse.ArgumentParser, *, call: bool) -> None:
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="OID", help="the caller's object id (CallerUserId)")
    who.add_argument("--subscription", metavar="ID", help="the APIM subscription (SubscriptionId)")
    if call:
        who.add_argument("--call", metavar="CORRELATION_ID", help="one call")


def _subject_of(args: argparse.Namespace) -> Subject:
    for kind in ("user", "subscription", "call"):
        value = getattr(args, kind, None)
        if value:
            return Subject(kind, value)
    raise AssertionError("argparse requires one")


def cmd_verify(args: argparse.Namespace) -> int:
    if options.reversed_range(args):
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


def cmd_erase(args: argparse.Namespace) -> int:
    if options.reversed_range(args):
        return 2
    cfg = options.config(args)
    store = options.ensured_store(cfg)
    subject = _subject_of(args)
    try:
        done = erasing.erase(store, subject, args.from_day, args.to_day, dry_run=args.dry_run)
    except Held as held:
        print(
            f"error: refused: legal hold {', '.join(repr(c) for c in held.cases)} covers "
            f"{held.held} of this subject's calls (release it first, or erase the others "
            "with --call or --from/--to)",
            file=sys.stderr,
        )
        named = ", ".join(terminal_text(c) for c in held.calls)
        more = f" and {held.held - len(held.calls)} more" if held.held > len(held.calls) else ""
        print(f"held calls: {named}{more}", file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    span = (
        f"{args.from_day or 'the first day'} to {args.to_day or 'the last'}"
        if args.from_day or args.to_day
        else "all days"
    )
    verb = "would erase" if args.dry_run else "erased"
    print(f"{verb} {subject.kind} {_shown(subject)}: {_n(done.calls, 'call')} ({span})")
    records = len(done.pointers) + len(done.copies)
    if args.dry_run:
        print(
            f"  archive: {_n(records, 'record')} in {_n(done.blobs, 'blob')} would lose their keys "
            f"({len(done.copies)} of them copies no row points at)"
        )
    else:
        print(
            f"  archive: {_n(done.destroyed, 'record key')} destroyed in {_n(done.blobs, 'blob')} "
            f"({len(done.copies)} copies no row points at; blobs untouched, WORM)"
        )
    if done.unsealed:
        print(
            f"  warning: {done.unsealed} records were archived unsealed (before "
            "ARCHIVE_ENCRYPTION=on): they stay readable until the archive's retention ends"
        )
    if done.dead_letters or done.dead_letters_rewritten:
        dl_verb = "would be deleted" if args.dry_run else "deleted"
        rw_verb = "would be written again" if args.dry_run else "written again"
        print(
            f"  dead letters naming these calls: {done.dead_letters} {dl_verb}, "
            f"{done.dead_letters_rewritten} holding other calls too {rw_verb} without them"
        )
    if done.dead_letters_unchecked:
        print(
            f"  warning: {len(done.dead_letters_unchecked)} dead letters left as they were (larger "
            "than any this pipeline writes, or written meanwhile): run erase again, or delete "
            "them by hand if they are the subject's:"
        )
        for name in done.dead_letters_unchecked[:20]:
            print(f"    {cfg.deadletter_container}/{name}")
    rows_verb = "would be blanked" if args.dry_run else "blanked, Erased set"
    print(f"  rows: {len(done.rows)} ({rows_verb}; {done.already} erased before)")
    if done.log:
        print(f"  erasure log: {cfg.archive_container}/{done.log}")
    return 1 if done.dead_letters_unchecked else 0  # not done until those are looked at


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _shown(subject: Subject) -> str:
    # The operator typed it; shown cut, so a terminal log of the session keeps little of it.
    v = subject.value
    return v if subject.kind == "call" else (v[:8] + "…" if len(v) > 8 else v)


def cmd_hold(args: argparse.Namespace) -> int:
    if not CASE.fullmatch(args.case):
        print("error: --case: 1-100 letters, digits, '.', '_', '-' or spaces", file=sys.stderr)
        return 2
    if options.reversed_range(args):
        return 2
    store = options.ensured_store(options.config(args))
    subject = _subject_of(args)
    try:
        h, done, why = erasing.hold(store, args.case, subject, args.from_day, args.to_day)
    except (HoldExists, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"hold {h.case!r}: {subject.kind} {_shown(subject)}, {h.start} to {h.end}; "
        "erase refuses its data until `release`"
    )
    _blob_holds(done, len(h.blobs), why, "set")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    store = options.ensured_store(options.config(args))
    h, done, why = erasing.release(store, args.case)
    if h is None:
        print(f"error: no hold named {args.case!r}", file=sys.stderr)
        return 2
    if done == 0 and why is None and h.released is not None:
        print(f"hold {h.case!r} was released already ({h.released:%Y-%m-%d %H:%M}Z)")
        return 0
    print(f"released hold {h.case!r}")
    _blob_holds(done, len(h.blobs), why, "cleared")
    if h.unlisted:
        print(
            f"  warning: {h.unlisted} archive blobs were held but too many to list: clear "
            "their legal holds in the portal or with `az storage blob set-legal-hold`",
            file=sys.stderr,
        )
    return 0


def _blob_holds(done: int, total: int, why: str | None, verb: str) -> None:
    if why is None:
        print(f"  legal hold {verb} on {_n(done, 'archive blob')}")
    else:
        print(
            f"  warning: legal hold {verb} on {done} of {total} archive blobs: this storage "
            f"does not support it ({why}); Azurite has no legal holds, Azure needs "
            "version-level immutability on the container (infra/ sets it)",
            file=sys.stderr,
        )
