"""Download the COCO images a corpus lists, and the ``dar fetch-data`` command.

The ChatIR files come through pooch (pinned hashes); the COCO images do not, measured by
``measure/coco_download.py`` against a loopback server (pooch 1.9.0): ChatIR's corpus lists pin no
hash for the 50,000 images, so pooch keeps an HTTP 200 page that is not an image (a captive portal)
under the image's final name; ``pooch.Pooch`` with the retries made here (``retry_if_failed=3``)
also retries a 404 four times over 6 s, and ``pooch.retrieve`` has no retry at all (a 503 or a cut
connection fails the file). Here every download is decoded before it takes its name, retried on
connection trouble, 5xx, 429, truncation and undecodable bytes (with backoff), never on 404/403,
with one session per worker thread.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from dar_lib.argtypes import float_in, int_in
from dar_lib.atomic import atomic_path
from dar_lib.benchmarks import chatir
from dar_lib.benchmarks.images import load_image, resolve
from dar_lib.errors import DataError

log = logging.getLogger(__name__)

#: COCO serves every image individually at ``<base>/<split>/<file name>``.
COCO_BASE_URL = "http://images.cocodataset.org"
#: Corpus lists ``dar fetch-data coco --corpus`` knows.
CORPORA = ("chatir50k", "coco5k")

_CHUNK = 1 << 16


class _Retry(Exception):
    """A failure worth another attempt (connection trouble, 5xx, truncated or garbage body)."""


class _GiveUp(Exception):
    """A failure another attempt will not fix (404, 403, ...)."""


@dataclass
class FetchReport:
    """What :func:`fetch_coco` did.

    Attributes:
        fetched: corpus paths downloaded in this run.
        skipped: corpus paths already present and decodable.
        failed: corpus path -> reason, for those that could not be fetched.
        retries: extra attempts made across all files.
        n_bytes: bytes written for fetched files.
        seconds: wall-clock time of the run.
    """

    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    n_bytes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no file failed (fetched and skipped files both count as success)."""
        return not self.failed

    def summary(self, max_failures: int = 10) -> str:
        """A human-readable report: one line of counts, retries, MB (10^6 bytes) and seconds, then failures.

        Args:
            max_failures: failed files listed one per line (``"  FAILED <path>: <reason>"``);
                any beyond are counted in a final ``"... and N more"`` line.

        Returns:
            Newline-joined text, no trailing newline.
        """
        lines = [
            f"fetched {len(self.fetched)}, skipped {len(self.skipped)} (already present), "
            f"failed {len(self.failed)}; {self.retries} retries, {self.n_bytes / 1e6:.1f} MB "
            f"in {self.seconds:.1f} s"
        ]
        for path, reason in list(self.failed.items())[:max_failures]:
            lines.append(f"  FAILED {path}: {reason}")
        if len(self.failed) > max_failures:
            lines.append(f"  ... and {len(self.failed) - max_failures} more")
        return "\n".join(lines)


def _decodes(path: Path) -> bool:
    try:
        load_image(path)
        return True
    except DataError:
        return False


def _verify_image(path: Path) -> None:
    """Raise :class:`_Retry` unless ``path`` is a complete, decodable image."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()  # structural check; it leaves the object unusable, so reopen to decode
        with Image.open(path) as img:
            img.load()
    except Exception as exc:  # PIL raises many types for bad bytes
        # PIL's message names the temp file, which is gone by the time anyone reads the report.
        detail = str(exc).replace(str(path), "the download")
        raise _Retry(f"downloaded bytes are not a decodable image ({type(exc).__name__}: {detail})") from exc


def _download_once(session, url: str, dest: Path, timeout: float) -> int:
    """One attempt: stream to a temp file beside ``dest``, verify, rename; returns bytes written."""
    import requests

    with atomic_path(dest) as tmp:
        try:
            with session.get(url, stream=True, timeout=timeout) as resp:
                status = resp.status_code
                if status == 429 or status >= 500 or status == 408:
                    raise _Retry(f"HTTP {status}")
                if status != 200:
                    raise _GiveUp(f"HTTP {status}")
                expected = resp.headers.get("Content-Length")
                n_bytes = 0
                with open(tmp, "wb") as fh:
                    for block in resp.iter_content(_CHUNK):
                        fh.write(block)
                        n_bytes += len(block)
        except requests.RequestException as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        if expected is not None and expected.isdigit() and int(expected) != n_bytes:
            raise _Retry(f"truncated body: {n_bytes} of {expected} bytes")
        _verify_image(tmp)
    return n_bytes


def _fetch_one(get_session, url: str, dest: Path, retries: int, timeout: float, backoff: float):
    """Returns ``(status, detail, retries_used)``; status is fetched / skipped / failed."""
    if dest.is_file():
        if _decodes(dest):
            return "skipped", 0, 0
        log.warning("%s exists but does not decode; downloading it again", dest)
    reason = ""
    for attempt in range(retries + 1):
        if attempt:
            # Exponential backoff: COCO's server and flaky links recover better when not hammered.
            time.sleep(min(backoff * 2 ** (attempt - 1), 30.0))
        try:
            return "fetched", _download_once(get_session(), url, dest, timeout), attempt
        except _GiveUp as exc:
            return "failed", f"{exc} from {url}", attempt
        except _Retry as exc:
            reason = f"{exc} from {url}"
            log.debug("attempt %d for %s failed: %s", attempt + 1, url, exc)
    return "failed", f"{reason} (gave up after {retries + 1} attempts)", retries


def fetch_coco(
    corpus_paths: Sequence[str],
    image_root: str | os.PathLike,
    base_url: str = COCO_BASE_URL,
    workers: int = 16,
    retries: int = 3,
    timeout: float = 30,
    progress: bool = True,
    backoff: float = 1.0,
) -> FetchReport:
    """Download each listed COCO image to ``<image_root>/<corpus path>``, resumably.

    Files already present that decode are skipped. Each download goes to a temporary file in
    the destination folder, is checked to decode completely with PIL, and only then is renamed
    into place, so a killed run or a bad response never leaves a partial file under its final
    name. Connection errors, timeouts, HTTP 5xx/429, truncated bodies and undecodable bytes are
    retried with exponential backoff; other HTTP errors (404, 403) fail at once.

    Args:
        corpus_paths: relative paths such as ``"unlabeled2017/000000185565.jpg"`` (duplicates
            are fetched once).
        image_root: destination folder.
        base_url: server prefix; the URL of a file is ``<base_url>/<corpus path>``.
        workers: concurrent downloads.
        retries: extra attempts per file after the first.
        timeout: seconds to wait for the server to connect or send data.
        progress: show a tqdm progress bar.
        backoff: seconds before the first retry; doubled for each further one (capped at 30 s).

    Returns:
        A :class:`FetchReport` of fetched, skipped and failed files.

    Raises:
        DataError: a corpus path escapes ``image_root`` (checked before anything is fetched).

    Examples:
        ``fetch_coco(chatir.load_corpus()[:10], "~/data/coco").ok`` is True once the ten images are
        in place (it downloads from COCO's servers).
    """
    import requests
    from tqdm import tqdm

    start = time.perf_counter()
    unique = list(dict.fromkeys(corpus_paths))
    root = Path(image_root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    targets = [(p, resolve(root, p)) for p in unique]
    base = base_url.rstrip("/")

    local = threading.local()
    sessions: list = []
    lock = threading.Lock()

    def get_session():
        # One session per worker thread: connection reuse without sharing a Session across threads.
        if not hasattr(local, "session"):
            local.session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            local.session.mount("http://", adapter)
            local.session.mount("https://", adapter)
            with lock:
                sessions.append(local.session)
        return local.session

    report = FetchReport()
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {
                pool.submit(_fetch_one, get_session, f"{base}/{p}", dest, retries, timeout, backoff): p
                for p, dest in targets
            }
            with tqdm(total=len(futures), desc="COCO images", unit="img", disable=not progress) as bar:
                for fut in as_completed(futures):
                    path = futures[fut]
                    status, detail, used = fut.result()
                    report.retries += used
                    if status == "fetched":
                        report.fetched.append(path)
                        report.n_bytes += detail
                    elif status == "skipped":
                        report.skipped.append(path)
                    else:
                        report.failed[path] = detail
                    bar.update(1)
                    bar.set_postfix(failed=len(report.failed), refresh=False)
    finally:
        for s in sessions:
            s.close()
    order = {p: i for i, p in enumerate(unique)}
    report.fetched.sort(key=order.__getitem__)
    report.skipped.sort(key=order.__getitem__)
    report.failed = dict(sorted(report.failed.items(), key=lambda kv: order[kv[0]]))
    report.seconds = time.perf_counter() - start
    return report


# -- command line -------------------------------------------------------------------------
def corpus_paths(corpus: str) -> list[str]:
    """The image list of a named corpus: ``"chatir50k"`` (50,000 unlabeled2017) or ``"coco5k"`` (val2017)."""

    if corpus == "chatir50k":
        return chatir.load_corpus()
    if corpus == "coco5k":
        return chatir.load_coco_single_turn()[0]
    raise ValueError(f"unknown corpus {corpus!r}; valid: {', '.join(CORPORA)}")


def register(subparsers) -> None:
    """Add ``dar fetch-data`` to the ``dar`` command."""

    p = subparsers.add_parser(
        "fetch-data",
        help="download and verify benchmark files (chatir) or COCO images (coco)",
        description=(
            "chatir: fetch every pinned ChatIR/PlugIR JSON file into the cache (DAR_CACHE_DIR), "
            "checking sha256; copies from DAR_DATA_MIRROR when set. "
            "coco: download the COCO images a corpus lists to IMAGE_ROOT/<split>/<file>; "
            "resumable, verified, concurrent. Exits non-zero if any file failed."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("what", choices=("coco", "chatir"), help="what to fetch")
    p.add_argument("--corpus", choices=CORPORA, default="chatir50k",
                   help="coco: image list; chatir50k = ChatIR's 50k unlabeled2017 search space, "
                        "coco5k = PlugIR's 5k val2017 single-turn list")
    p.add_argument("--image-root", type=Path, help="coco: destination folder (required for coco)")
    p.add_argument("--workers", type=int_in(1, 256), default=16, help="coco: concurrent downloads")
    p.add_argument("--base-url", default=COCO_BASE_URL, help="coco: server prefix; URL = BASE_URL/<corpus path>")
    p.add_argument("--limit", type=int_in(1), default=None, help="coco: fetch only the first N images of the list")
    p.add_argument("--retries", type=int_in(0, 100), default=3, help="coco: extra attempts per file")
    p.add_argument("--timeout", type=float_in(0, 3600, open_low=True), default=30.0,
                   help="coco: seconds to wait for the server")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_handler)


def _handler(args: argparse.Namespace) -> int:
    try:
        if args.what == "chatir":
            for key, path in chatir.fetch_all(progress=not args.no_progress).items():
                print(f"ok {key} -> {path}")
            return 0
        if args.image_root is None:
            print("dar: error: fetch-data coco: --image-root is required", file=sys.stderr)
            return 2
        paths = corpus_paths(args.corpus)
        if args.limit is not None:
            paths = paths[: args.limit]
        report = fetch_coco(
            paths, args.image_root, base_url=args.base_url, workers=args.workers,
            retries=args.retries, timeout=args.timeout, progress=not args.no_progress,
        )
    except DataError as exc:
        print(f"dar: error: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0 if report.ok else 1
