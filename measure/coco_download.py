"""Can pooch download the COCO images instead of ``dar_lib.benchmarks.coco``'s own downloader? (issue 33 item 3)

A loopback HTTP server serves one JPEG under four behaviours COCO's servers and flaky links show:

- ``ok``: the image;
- ``missing``: HTTP 404 (a path that is not on the server; retrying cannot help);
- ``garbage``: HTTP 200 with bytes that are not an image (a captive portal, a proxy error page);
- ``flaky``: HTTP 503 on the first request, then the image;
- ``truncated``: a Content-Length longer than the body sent (a dropped connection), then the image.

Each is fetched by :func:`dar_lib.benchmarks.coco.fetch_coco` (3 retries, 0.1 s backoff), by
``pooch.retrieve`` with no known hash (ChatIR's corpus lists pin none for the 50,000 COCO images; it
has no retry option) and by ``pooch.Pooch.fetch`` with ``retry_if_failed=3`` (the retries ``fetch_coco``
makes). Printed per case: requests made, seconds, and what is left under the final name. Last line: a
JSON object.

    python measure/coco_download.py
"""

from __future__ import annotations

import http.server
import io
import json
import tempfile
import threading
import time
from pathlib import Path


def _jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


class _Server(http.server.BaseHTTPRequestHandler):
    image = b""
    hits: dict = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        case = self.path.strip("/").split("/")[0]
        n = self.hits[case] = self.hits.get(case, 0) + 1
        if case == "missing":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if case == "flaky" and n == 1:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"<html>please log in to the wifi</html>" if case == "garbage" else self.image
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if case == "truncated" and n == 1:
            self.wfile.write(body[: len(body) // 2])  # then the connection closes
            self.close_connection = True
            return
        self.wfile.write(body)


def _left(path: Path) -> str:
    if not path.is_file():
        return "nothing"
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
        return "the image"
    except Exception:  # noqa: BLE001
        return "undecodable bytes"


def main(argv=None) -> int:
    """Serve the cases, fetch each with every tool, print a row per (case, tool) and the JSON last line."""
    import argparse
    import logging

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)

    import pooch

    from dar_lib.benchmarks.coco import fetch_coco

    pooch.get_logger().setLevel(logging.ERROR)
    _Server.image = _jpeg()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    rows = []
    for case in ("ok", "missing", "garbage", "flaky", "truncated"):
        for tool in ("dar fetch_coco", "pooch.retrieve", "pooch.Pooch(retry_if_failed=3)"):
            _Server.hits = {}
            with tempfile.TemporaryDirectory() as tmp:
                rel = f"{case}/img.jpg"
                dest = Path(tmp) / rel
                t0, error = time.perf_counter(), ""
                try:
                    if tool == "dar fetch_coco":
                        report = fetch_coco([rel], tmp, base_url=base, workers=1, retries=3, timeout=5,
                                            progress=False, backoff=0.1)
                        error = "; ".join(report.failed.values())
                    elif tool == "pooch.retrieve":
                        pooch.retrieve(f"{base}/{rel}", known_hash=None, fname="img.jpg", path=dest.parent,
                                       progressbar=False)
                    else:
                        pooch.create(path=tmp, base_url=f"{base}/", registry={rel: None},
                                     retry_if_failed=3).fetch(rel)
                except Exception as exc:  # noqa: BLE001 - what each tool raises is the result
                    error = f"{type(exc).__name__}: {str(exc)[:80]}"
                rows.append({"case": case, "tool": tool, "requests": _Server.hits.get(case, 0),
                             "seconds": round(time.perf_counter() - t0, 2), "left": _left(dest),
                             "error": error[:100]})
                r = rows[-1]
                print(f"{case:8} {tool:31} requests {r['requests']}  {r['seconds']:5.2f} s  left: {r['left']:17}"
                      f"  {r['error']}", flush=True)
    server.shutdown()
    print(json.dumps({"pooch": pooch.__version__, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
