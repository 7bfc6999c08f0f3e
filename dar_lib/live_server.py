"""``dar explore``: the live explorer (:mod:`dar_lib.live`) served on 127.0.0.1 by Voila, with the toy models.

One command, no replay first: it indexes the toy corpus once (cached in the artefact store, so
later starts are quick), writes a one-cell notebook that builds :func:`dar_lib.live.live_app`, and
runs ``voila`` on it, bound to 127.0.0.1, opening the browser. Voila is the ``live`` extra
(``pip install -e ".[live]"``, pinned in ``pyproject.toml``).

Nothing is left running: SIGINT (Ctrl-C), SIGTERM (what a service manager sends) and SIGHUP (a
closed terminal) stop Voila and every process it started (its kernels run in sessions of their own,
so they are found as Voila's descendants, not by process group), then the temporary notebook folder
is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping

from dar_lib import profiles
from dar_lib.argtypes import int_in
from dar_lib.benchmarks import TOY
from dar_lib.errors import MissingDependencyError
from dar_lib.live import live_app
from dar_lib.profiles import PROFILES

#: The toy benchmarks a live search can draw its dialogues (and targets) from.
DEFAULT_BENCHMARK = "toy-chatgpt"
DEFAULT_PORT = 8866
#: The encoder role (of the toy profile's ``encoders``) a live search reads with by default: the one that
#: reads every fact a person can state (``full``; ``zero-shot`` cannot read the background by design, the
#: premise chapter's model). ``dar explore --encoder`` picks another.
DEFAULT_ENCODER = "full"


def toy_app(benchmark: str = DEFAULT_BENCHMARK, smoke: bool = False, encoder: str = DEFAULT_ENCODER):
    """The live app over the toy profile's pipeline with the ``encoder`` role and ``benchmark``'s corpus (indexed
    once, cached).

    Raises:
        ValueError: ``benchmark`` is not a toy benchmark, or ``encoder`` not a role of the toy profile (the
            message lists them).
    """
    from dar_lib import chapters

    if benchmark not in TOY:
        raise ValueError(f"dar explore: benchmark {benchmark!r} is not a toy benchmark; choose one of {', '.join(TOY)}")
    params = profiles.parameters("toy", smoke)
    if encoder not in params["encoders"]:
        raise ValueError(f"dar explore: encoder {encoder!r} is not one of the toy profile's: "
                         f"{', '.join(params['encoders'])}")
    bench = chapters.benchmark(params, benchmark)
    pipe = chapters.pipeline(params, encoder, bench=bench)
    return live_app(pipe, bench)


def notebook_text(benchmark: str = DEFAULT_BENCHMARK, smoke: bool = False, encoder: str = DEFAULT_ENCODER) -> str:
    """The one-cell notebook Voila serves (nbformat 4 JSON)."""
    source = ("from dar_lib.live_server import toy_app\n"
              f"toy_app({benchmark!r}, smoke={smoke!r}, encoder={encoder!r})\n")
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                     "source": source}],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb, indent=1)


#: The Jupyter data folder holding the ``dar-offline`` Voila template (lab's, with no request to a CDN).
VOILA_SHARE = Path(__file__).resolve().parent / "live_share"
VOILA_TEMPLATE = "dar-offline"


def voila_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment Voila runs in: ``base`` (default ``os.environ``) with :data:`VOILA_SHARE` first on
    ``JUPYTER_PATH``, where Voila looks for the ``dar-offline`` template."""
    env = dict(os.environ if base is None else base)
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(VOILA_SHARE), env.get("JUPYTER_PATH", "")) if p)
    return env


def voila_command(notebook: Path, port: int, open_browser: bool) -> list[str]:
    """The ``voila`` command line: this Python, 127.0.0.1 only, the given port and no other (Voila would
    otherwise move to the next free port while ``dar explore`` announces this one), and the
    ``dar-offline`` template (run it with :func:`voila_env`)."""
    cmd = [sys.executable, "-m", "voila", str(notebook), f"--port={port}", "--Voila.ip=127.0.0.1",
           "--Voila.port_retries=0", "--show_tracebacks=True", f"--template={VOILA_TEMPLATE}"]
    if not open_browser:
        cmd.append("--no-browser")
    return cmd


@contextlib.contextmanager
def voila_server(notebook: Path, port: int, env: Mapping[str, str] | None = None, log: Path | None = None,
                 start_timeout_s: float = 120.0):
    """Voila serving ``notebook`` on 127.0.0.1:``port`` (no browser) while the ``with`` block runs; then it
    and everything it started are stopped (:func:`stop_tree`), however the block ends.

    Args:
        notebook: the notebook file (e.g. :func:`notebook_text` written out).
        port: a free port.
        env: the environment (``os.environ`` by default), passed through :func:`voila_env`.
        log: where Voila's output goes (default ``voila.log`` beside the notebook).
        start_timeout_s: how long to wait for Voila to listen.

    Yields:
        The page's URL, ``http://127.0.0.1:<port>/``.

    Raises:
        OSError: the port is in use (:func:`check_port`), before anything starts.
        RuntimeError: Voila exited or did not listen in time (the message ends with its log).
    """
    import socket
    import time

    check_port(port)  # else the wait below would take another program's listener for Voila's
    notebook = Path(notebook)
    log = Path(log) if log is not None else notebook.parent / "voila.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(voila_command(notebook, port, open_browser=False), cwd=notebook.parent,
                                env=voila_env(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"Voila exited with status {proc.returncode}:\n{log.read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"Voila did not listen on port {port} in {start_timeout_s:.0f} s:\n"
                                           f"{log.read_text()}") from None
                    time.sleep(0.5)
            yield f"http://127.0.0.1:{port}/"
        finally:
            stop_tree(proc, grace_s=10.0)


def check_port(port: int) -> None:
    """Refuse a port another program listens on at 127.0.0.1, before anything is announced there.

    Raises:
        OSError: ``port P on 127.0.0.1 is in use ...`` (one line; choose another with ``--port``).
    """
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise type(exc)(f"port {port} on 127.0.0.1 is in use by another program ({exc.strerror}); "
                            f"choose another with --port") from None


def handler(args: argparse.Namespace) -> int:
    """Run ``dar explore``: index the corpus once, then serve until interrupted.

    Raises:
        MissingDependencyError: Voila is not installed (the message says which extra installs it).
    """
    import importlib.util

    check_port(args.port)
    if importlib.util.find_spec("voila") is None:
        raise MissingDependencyError('dar explore needs Voila: pip install -e ".[live]"')
    print(f"dar explore: loading the toy models and indexing {args.benchmark}'s corpus (cached after the first start)",
          flush=True)
    toy_app(args.benchmark, smoke=args.smoke, encoder=args.encoder)  # fills the store: the kernel starts at once
    with tempfile.TemporaryDirectory(prefix="dar-explore-") as tmp:
        notebook = Path(tmp) / "dar_live.ipynb"
        notebook.write_text(notebook_text(args.benchmark, args.smoke, args.encoder))
        check_port(args.port)  # again: indexing took a while
        print(f"dar explore: serving http://127.0.0.1:{args.port}/ (Ctrl-C stops it)", flush=True)
        return serve(voila_command(notebook, args.port, not args.no_browser))


class _Stopped(Exception):
    """A stop signal arrived (its number in ``args[0]``)."""


#: Signals that stop ``dar explore`` (and everything it started).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def serve(cmd: list[str], grace_s: float = 15.0) -> int:
    """Run ``cmd`` (Voila) until it exits or a stop signal arrives; then stop it and all it started.

    On SIGINT, SIGTERM or SIGHUP, Voila gets SIGTERM (it shuts its kernels down), and after
    ``grace_s`` seconds whatever is left of it and its descendants is killed.

    Returns:
        Voila's exit status, or ``128 + signal number`` when stopped by a signal.
    """
    def stop(signum, _frame):
        raise _Stopped(signum)

    proc = subprocess.Popen(cmd, env=voila_env())
    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        return proc.wait()
    except (_Stopped, KeyboardInterrupt) as exc:
        signum = exc.args[0] if isinstance(exc, _Stopped) else signal.SIGINT
        for s in STOP_SIGNALS:  # a second signal must not cut the clean-up short
            signal.signal(s, signal.SIG_IGN)
        stop_tree(proc, grace_s)
        print(f"dar explore: stopped ({signal.Signals(signum).name})", file=sys.stderr, flush=True)
        return 128 + int(signum)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def stop_tree(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM ``proc``; after ``grace_s`` seconds kill it and every descendant still alive (kernels included)."""
    import psutil

    try:
        family = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(family, timeout=grace_s / 3)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``dar explore`` to the ``dar`` command."""

    p = subparsers.add_parser("explore", help="search yourself, turn by turn, in the browser (toy models, Voila)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", default=DEFAULT_BENCHMARK,
                   help=f"toy benchmark whose corpus and dialogues to use (default {DEFAULT_BENCHMARK})")
    p.add_argument("--port", type=int_in(1, 65535), default=DEFAULT_PORT,
                   help=f"port on 127.0.0.1 (default {DEFAULT_PORT})")
    p.add_argument("--encoder", default=DEFAULT_ENCODER, choices=tuple(PROFILES["toy"]["encoders"]),
                   help=f"which toy encoder reads the search (default {DEFAULT_ENCODER}: it reads every fact; "
                        "zero-shot cannot read backgrounds, by design)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--smoke", action="store_true", help="the tiny smoke-size world (quick to index; for tests)")
    p.set_defaults(func=handler)
