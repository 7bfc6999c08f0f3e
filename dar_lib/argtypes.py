"""Range-checked argparse types: a bad number on the command line is a one-line error naming the option."""

from __future__ import annotations

import argparse
import math


def int_span(lo: int, hi: int | None = None) -> str:
    """The allowed range in words, as every integer check says it: ``"in 1..10"`` or ``">= 1"``."""
    return f"in {lo}..{hi}" if hi is not None else f">= {lo}"


def int_in(lo: int, hi: int | None = None):
    """An argparse ``type`` accepting integers in ``lo..hi`` (``hi=None``: no upper bound).

    Examples:
        >>> int_in(1)("3")
        3
        >>> int_in(1, 10)("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: must be an integer in 1..10, got '0'
    """
    span = int_span(lo, hi)

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {span}, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be an integer {span}, got {text!r}")
        return value

    parse.__name__ = f"integer {span}"
    return parse


def float_in(lo: float, hi: float | None = None, *, open_low: bool = False):
    """An argparse ``type`` accepting finite numbers in ``[lo, hi]`` (``(lo, hi]`` with ``open_low``)."""
    span = f"{'(' if open_low else '['}{lo}, {hi if hi is not None else 'inf'}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in {span}, got {text!r}") from None
        if not math.isfinite(value) or value < lo or (open_low and value == lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be a number in {span}, got {text!r}")
        return value

    parse.__name__ = f"number in {span}"
    return parse
