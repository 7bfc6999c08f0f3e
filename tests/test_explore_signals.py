"""Nothing left running (issue 31, item 6): SIGTERM, SIGINT and SIGHUP to ``dar explore`` stop Voila (and, under
SIGTERM with a page open, its kernel), close the port and remove the temporary notebook folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from dar_lib.testing import free_port

pytestmark = pytest.mark.slow


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


# One handler serves the three signals (live_server.serve), and what it stops does not depend on which arrived: the
# kernel a page request starts is stopped under SIGTERM only; SIGINT and SIGHUP arrive while Voila waits for its
# first page (a page and its kernel cost about 6 s of CPU per case).
@pytest.mark.parametrize("sig, with_page", [(signal.SIGTERM, True), (signal.SIGINT, False), (signal.SIGHUP, False)],
                         ids=["SIGTERM-with-a-kernel", "SIGINT", "SIGHUP"])
def test_a_stop_signal_leaves_nothing_running(sig, with_page, tmp_path):
    port = free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    log = open(tmp_path / "explore.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "dar_lib.cli", "explore", "--smoke", "--no-browser", "--port",
                             str(port)], env={**os.environ, "TMPDIR": str(scratch)}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "explore.log").read_text()
            time.sleep(0.5)
        if with_page:  # a page request starts a kernel, as a person's browser would
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=240) as page:
                assert page.status == 200
                page.read()
        deadline = time.monotonic() + 60
        while True:
            family = psutil.Process(proc.pid).children(recursive=True)
            kernels = [p for p in family if "ipykernel" in " ".join(p.cmdline())]
            if kernels or not with_page or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert family and bool(kernels) == with_page, [p.cmdline() for p in family]
        assert [p.name for p in scratch.glob("dar-explore-*")], "the notebook folder was not where expected"
        os.kill(proc.pid, sig)
        assert proc.wait(90) == 128 + sig
        gone, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
        assert not _listening(port)
        assert list(scratch.glob("dar-explore-*")) == []
        assert f"dar explore: stopped ({sig.name})" in (tmp_path / "explore.log").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_voila_server_stops_voila_and_its_kernel_and_names_a_failed_start(tmp_path):
    """The context manager the browser test and measure/live_turn.py serve with: the page is up inside
    the block; after it the port is closed and no child is left. A taken port is refused first, and a
    Voila that exits (no such notebook) is one RuntimeError carrying its log, nothing left running."""
    from dar_lib import live_server

    notebook = tmp_path / "nb.ipynb"
    notebook.write_text(live_server.notebook_text(smoke=True))
    port = free_port()
    me = psutil.Process()
    with live_server.voila_server(notebook, port) as url:
        assert url == f"http://127.0.0.1:{port}/" and _listening(port)
        assert me.children(recursive=True)
    assert not _listening(port)
    assert not [p for p in me.children(recursive=True) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(OSError, match=f"port {port} on 127.0.0.1 is in use"):
            with live_server.voila_server(notebook, port):
                pass
    with pytest.raises(RuntimeError, match=r"Voila exited with status [1-9]:\n(.|\n)*missing.ipynb"):
        with live_server.voila_server(tmp_path / "missing.ipynb", port):
            pass
    assert not [p for p in me.children(recursive=True) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
