"""``dar book``'s command line (and ``python -m dar_lib.book``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import dar_lib.book
from dar_lib import profiles
from dar_lib.book import REPO, build_book, report
from dar_lib.redact import redact


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``dar book`` to the ``dar`` command."""
    p = subparsers.add_parser("book", help="run every chapter with papermill and build the book",
                              description=dar_lib.book.__doc__.split("\n\n")[0])
    add_arguments(p)
    p.set_defaults(func=handler)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``dar book``'s options (profile, smoke, only, out, force, no-book) to a parser."""
    p.add_argument("--profile", choices=sorted(profiles.PROFILES), default=None,
                   help="parameter table (default: toy; paper with --rehearsal)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, as the tests run the chapters")
    p.add_argument("--rehearsal", action="store_true",
                   help="rehearse the paper profile: every model replaced by a tiny random stand-in of the same "
                        "class and layout, ChatIR's dialogues over a small corpus of fake images, smoke sizes "
                        "(stand-ins built once into $DAR_CACHE_DIR/rehearsal-*); the numbers mean nothing")
    p.add_argument("--params", type=Path, action="append", default=[], metavar="FILE",
                   help="YAML or JSON file of parameter overrides, e.g. image_root, corpus_file, benchmarks, "
                        "encoders (checked against the parameter table); repeatable, later files win, --set last")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="override one parameter (VALUE is YAML: 200, null, [a, b], {k: v}); repeatable, "
                        "e.g. --set image_root=/data/coco --set n_dialogues=200")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these chapters (e.g. 01_data)")
    p.add_argument("--out", type=Path, default=None,
                   help="build folder (default: _build; _build/rehearsal with --rehearsal)")
    p.add_argument("--force", action="store_true", help="re-run chapters even when unchanged")
    p.add_argument("--no-book", action="store_true", help="run the chapters only (skip phase 2)")


#: Parameters ``--set`` and ``--params`` may not change: the command's own options choose them.
RESERVED = ("profile", "smoke", "rehearsal", "records_dir")


def parse_overrides(params_files: Sequence[Path] = (), items: Sequence[str] = ()) -> dict[str, Any]:
    """Parameter overrides from YAML/JSON files, then ``NAME=VALUE`` items (values parsed as YAML); later wins.

    They are checked later, with the profile, by :func:`dar_lib.profiles.parameters`.

    Raises:
        ValueError: an unreadable file, a file that is not a mapping, an item without ``=``, a value
            that is not YAML, or a name the command's own options set (the message names it).
    """
    import yaml

    out: dict[str, Any] = {}
    for params_file in params_files:
        try:
            data = yaml.safe_load(Path(params_file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"{params_file}: cannot read parameter overrides: {exc}") from None
        if data is not None and not isinstance(data, dict):
            raise ValueError(f"{params_file}: expected a mapping of parameter names to values, "
                             f"got {type(data).__name__}")
        out.update(data or {})
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"--set {item!r}: expected NAME=VALUE, e.g. --set n_dialogues=200")
        try:
            out[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {item!r}: the value is not valid YAML ({exc})") from None
    reserved = sorted(set(out) & set(RESERVED))
    if reserved:
        raise ValueError(f"parameter(s) {', '.join(reserved)} are set by dar book's own options "
                         "(--profile, --smoke, --rehearsal, --out), not by --set or --params")
    return out


def handler(args: argparse.Namespace) -> int:
    """Run ``dar book``; a bad option or parameter is a one-line error with exit status 2."""
    log = lambda s: print(s, flush=True)  # noqa: E731
    try:
        profile, smoke, out = args.profile or "toy", args.smoke, args.out
        overrides = parse_overrides(getattr(args, "params", ()), getattr(args, "overrides", ()))
        if args.rehearsal:
            if args.profile not in (None, "paper"):
                raise ValueError(f"--rehearsal rehearses the paper profile; it cannot run --profile {args.profile}")
            from dar_lib import rehearsal

            profile, smoke, out = "paper", True, out or REPO / "_build" / "rehearsal"
            overrides = {**rehearsal.prepare(log=log), **overrides}
        result = build_book(out or REPO / "_build", profile, smoke, args.only, args.force, parameters=overrides,
                            compile_book=not args.no_book, log=log)
    except ValueError as exc:
        print(f"dar: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    return report(result)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dar_lib.book``: the same as ``dar book``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m dar_lib.book", description=dar_lib.book.__doc__.split("\n\n")[0])
    add_arguments(parser)
    return handler(parser.parse_args(argv))
