"""The ``dar`` command line: each subcommand is defined next to the code it runs."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: Modules that each define ``register(subparsers)``; imported lazily-cheaply (no torch at import).
COMMAND_MODULES = (
    "dar_lib.benchmarks.coco",          # dar fetch-data
    "dar_lib.toymodels.train",          # dar train-toy
    "dar_lib.evaluate",                 # dar eval
    "dar_lib.book",                     # dar book
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dar",
        description="Diffusion Augmented Retrieval: data, toy models, evaluation and the book.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that part of the library is not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
