"""Time a clean build and an unchanged rebuild of the book (default profile); last line is JSON.

Usage:
    python measure/book_build.py [--profile toy] [--smoke] [--out DIR] [--keep-cache]

A clean build starts from an empty build folder and, unless --keep-cache, an empty DAR_CACHE_DIR
(so generated images and embeddings are recomputed as on a fresh machine). The unchanged rebuild
runs right after it with nothing changed. Targets (issue 5): clean <= 30 min, rebuild <= 60 s on
a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dar_lib import book, profiles  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="toy", choices=sorted(profiles.PROFILES))
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="build folder (default: a fresh temp folder)")
    p.add_argument("--keep-cache", action="store_true", help="reuse DAR_CACHE_DIR instead of an empty one")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dar-book-bench-"))
    out = args.out or work / "build"
    if out.exists():
        shutil.rmtree(out)
    if not args.keep_cache:
        os.environ["DAR_CACHE_DIR"] = str(work / "cache")
    log = lambda s: print(s, flush=True)  # noqa: E731

    t = time.perf_counter()
    clean = book.build_book(out, args.profile, args.smoke, log=log)
    clean_s = time.perf_counter() - t
    book.report(clean, log)
    t = time.perf_counter()
    rebuild = book.build_book(out, args.profile, args.smoke, log=log)
    rebuild_s = time.perf_counter() - t
    book.report(rebuild, log)

    print(f"clean build: {clean_s:.1f} s ({len(clean.executed)} chapters run, {len(clean.failed)} failed)")
    print(f"unchanged rebuild: {rebuild_s:.1f} s ({len(rebuild.executed)} chapters run)")
    print(json.dumps({
        "profile": args.profile, "smoke": args.smoke,
        "clean_s": round(clean_s, 1), "rebuild_s": round(rebuild_s, 1),
        "clean_ok": clean.ok, "rebuild_ok": rebuild.ok,
        "chapters_run_clean": len(clean.executed), "chapters_run_rebuild": len(rebuild.executed),
        "failed": sorted(clean.failed), "clean_target_s": 1800, "rebuild_target_s": 60,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }))
    if not args.keep_cache:
        shutil.rmtree(work / "cache", ignore_errors=True)
    return 0 if clean.ok and rebuild.ok else 1


if __name__ == "__main__":
    sys.exit(main())
