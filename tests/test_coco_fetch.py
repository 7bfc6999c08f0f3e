"""COCO image fetching against local HTTP servers that misbehave in controlled ways."""

from __future__ import annotations

import collections
import http.server
import io
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dar_lib import cli
from dar_lib.benchmarks import coco
from dar_lib.errors import DataError

FAST = dict(workers=2, retries=2, timeout=2, progress=False, backoff=0.01)


def jpeg_for(path: str) -> bytes:
    """A small JPEG whose colour is derived from its path, so each file is distinguishable."""
    seed = sum(path.encode())
    img = Image.new("RGB", (24, 16), (seed % 256, (seed * 7) % 256, (seed * 13) % 256))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


class _CocoHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``jpeg_for(path)``; ``modes[path]`` picks a misbehaviour, ``hits`` counts requests."""

    modes: dict[str, str] = {}
    hits: collections.Counter = collections.Counter()

    def do_GET(self):  # noqa: N802
        path = self.path.lstrip("/")
        with self.lock:
            self.hits[path] += 1
            n = self.hits[path]
        mode = self.modes.get(path, "ok")
        body = jpeg_for(path)
        if mode == "404":
            return self.send_error(404)
        if mode == "500_always" or (mode == "500_first" and n == 1):
            return self.send_error(500)
        if mode == "garbage":
            body = np.random.default_rng(n).integers(0, 256, 900, dtype=np.uint8).tobytes()
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "drop_always" or (mode == "drop_first" and n == 1):
            # Half the promised body, then hang up: the client sees a truncated response.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if mode == "stall":
            time.sleep(1.0)
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


@pytest.fixture
def server():
    handler = type("Handler", (_CocoHandler,), {"modes": {}, "hits": collections.Counter(), "lock": threading.Lock()})
    srv = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield handler
    srv.shutdown()
    srv.server_close()


PATHS = [f"unlabeled2017/{i:012d}.jpg" for i in (8, 24, 185565)] + ["val2017/000000000139.jpg"]


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name.startswith("."))


def test_fetch_all_files(server, tmp_path):
    report = coco.fetch_coco(PATHS, tmp_path, base_url=server.url, **FAST)
    assert report.ok and report.fetched == PATHS and report.skipped == [] and report.retries == 0
    for p in PATHS:
        assert (tmp_path / p).read_bytes() == jpeg_for(p)
        with Image.open(tmp_path / p) as img:
            assert img.size == (24, 16) and img.format == "JPEG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unlabeled2017", "val2017"]
    assert report.n_bytes == sum(len(jpeg_for(p)) for p in PATHS)
    assert _leftovers(tmp_path) == []
    assert all(server.hits[p] == 1 for p in PATHS)


def test_resume_fetches_nothing_and_replaces_broken(server, tmp_path):
    coco.fetch_coco(PATHS, tmp_path, base_url=server.url, **FAST)
    again = coco.fetch_coco(PATHS + PATHS[:1], tmp_path, base_url=server.url, **FAST)
    assert again.fetched == [] and again.skipped == PATHS and again.ok
    assert sum(server.hits.values()) == len(PATHS)
    # A file left undecodable (e.g. by another tool) is fetched again.
    (tmp_path / PATHS[1]).write_bytes(b"broken")
    third = coco.fetch_coco(PATHS, tmp_path, base_url=server.url, **FAST)
    assert third.fetched == [PATHS[1]] and (tmp_path / PATHS[1]).read_bytes() == jpeg_for(PATHS[1])


def test_dropped_connection_is_retried(server, tmp_path):
    server.modes.update({PATHS[0]: "drop_first", PATHS[2]: "drop_first"})
    report = coco.fetch_coco(PATHS, tmp_path, base_url=server.url, **FAST)
    assert report.ok and report.fetched == PATHS and report.retries == 2
    assert server.hits[PATHS[0]] == server.hits[PATHS[2]] == 2 and server.hits[PATHS[1]] == 1
    assert (tmp_path / PATHS[0]).read_bytes() == jpeg_for(PATHS[0])
    assert _leftovers(tmp_path) == []


def test_always_dropping_server_fails_cleanly(server, tmp_path):
    server.modes[PATHS[0]] = "drop_always"
    report = coco.fetch_coco(PATHS[:2], tmp_path, base_url=server.url, **FAST)
    assert not report.ok and report.fetched == [PATHS[1]]
    assert list(report.failed) == [PATHS[0]]
    assert "gave up after 3 attempts" in report.failed[PATHS[0]] and PATHS[0] in report.failed[PATHS[0]]
    assert server.hits[PATHS[0]] == 3  # bounded: 1 + retries
    assert not (tmp_path / PATHS[0]).exists()
    assert _leftovers(tmp_path) == []


def test_garbage_bytes_are_not_kept(server, tmp_path):
    server.modes[PATHS[0]] = "garbage"
    report = coco.fetch_coco(PATHS[:1], tmp_path, base_url=server.url, **FAST)
    assert "not a decodable image" in report.failed[PATHS[0]]
    assert server.hits[PATHS[0]] == 3
    assert list((tmp_path / "unlabeled2017").iterdir()) == []


def test_http_errors(server, tmp_path):
    server.modes.update({PATHS[0]: "404", PATHS[1]: "500_first", PATHS[2]: "500_always"})
    report = coco.fetch_coco(PATHS[:3], tmp_path, base_url=server.url, **FAST)
    assert report.fetched == [PATHS[1]]
    assert report.failed[PATHS[0]].startswith("HTTP 404")  # a 404 is final: no retry
    assert server.hits[PATHS[0]] == 1
    assert report.failed[PATHS[2]].startswith("HTTP 500") and "gave up after 3 attempts" in report.failed[PATHS[2]]
    assert server.hits[PATHS[2]] == 3 and server.hits[PATHS[1]] == 2
    assert sorted(p.name for p in (tmp_path / "unlabeled2017").iterdir()) == [Path(PATHS[1]).name]


def test_stalled_server_times_out(server, tmp_path):
    server.modes[PATHS[0]] = "stall"
    report = coco.fetch_coco(PATHS[:1], tmp_path, base_url=server.url, workers=1, retries=0,
                             timeout=0.2, progress=False)
    assert "Timeout" in report.failed[PATHS[0]] or "timed out" in report.failed[PATHS[0]]
    assert _leftovers(tmp_path) == [] and not (tmp_path / PATHS[0]).exists()


def test_escaping_path_refused_before_any_request(server, tmp_path):
    with pytest.raises(DataError, match=r"'\.\./evil\.jpg'.*escape"):
        coco.fetch_coco(PATHS[:1] + ["../evil.jpg"], tmp_path / "root", base_url=server.url, **FAST)
    assert sum(server.hits.values()) == 0


def test_cli_fetch_coco5k(server, tmp_path, mirror, capsys):
    argv = ["fetch-data", "coco", "--corpus", "coco5k", "--image-root", str(tmp_path), "--base-url", server.url,
            "--workers", "2", "--retries", "0", "--no-progress"]
    assert cli.main(argv + ["--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "fetched 3, skipped 0" in out
    assert sorted(p.name for p in (tmp_path / "val2017").iterdir()) == [
        "000000000139.jpg", "000000000285.jpg", "000000000632.jpg"]
    server.modes["val2017/000000000724.jpg"] = "404"
    assert cli.main(argv + ["--limit", "5"]) == 1
    out = capsys.readouterr().out
    assert "fetched 1, skipped 3" in out and "FAILED val2017/000000000724.jpg: HTTP 404" in out


def test_cli_fetch_chatir_into_cache(mirror, capsys):
    from dar_lib import settings
    from dar_lib.benchmarks import chatir

    assert cli.main(["fetch-data", "chatir", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for key in chatir.REGISTRY:
        assert f"ok {key}" in out
        assert (settings.cache_dir() / "data" / key).is_file()


def test_cli_help_documents_options(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["fetch-data", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--corpus", "--image-root", "--workers", "--base-url", "--limit", "--retries", "--timeout",
                   "--no-progress", "chatir50k", "coco5k", "{coco,chatir}"):
        assert option in text


def test_cli_coco_needs_image_root(capsys):
    assert cli.main(["fetch-data", "coco", "--limit", "1"]) == 2
    assert "--image-root is required" in capsys.readouterr().err
