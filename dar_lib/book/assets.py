"""The JavaScript the book's pages need (require.js, the widget manager, MathJax), installed once with
``npm ci`` from ``book/js/`` and copied into the HTML, so the book works with the network off."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable

#: (path inside node_modules, path under the HTML ``_static/vendor``); a folder is copied whole.
JS_ASSETS = (
    ("requirejs/require.js", "require.js"),
    ("@jupyter-widgets/html-manager/dist", "html-manager"),
    ("mathjax/es5", "mathjax/es5"),
)
_HTML_MANAGER_SKIP = (".map", ".LICENSE.txt")
_FONT_SUFFIXES = (".woff2", ".woff", ".ttf", ".eot", ".svg")


def ensure_js(js_dir: Path, log: Callable[[str], None] = print) -> Path:
    """Install the book's JavaScript with ``npm ci`` into ``<js_dir>/node_modules`` once.

    Returns:
        The ``node_modules`` folder.

    Raises:
        RuntimeError: npm is missing or fails (the message says how to fix it).
    """
    from filelock import FileLock

    node_modules = Path(js_dir) / "node_modules"
    if all((node_modules / src).exists() for src, _ in JS_ASSETS):
        return node_modules
    # `npm ci` first deletes node_modules: a second build in this checkout (a parallel test worker, another
    # `dar book`) waits for the first's install instead of copying from a half-deleted folder.
    with FileLock(str(Path(js_dir) / ".npm-install.lock")):
        if all((node_modules / src).exists() for src, _ in JS_ASSETS):
            return node_modules
        return _npm_install(Path(js_dir), node_modules, log)


def _npm_install(js_dir: Path, node_modules: Path, log: Callable[[str], None]) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm not found: the book serves require.js, the widget manager and MathJax from its own "
            f"files, installed with `npm ci` in {js_dir}. Install Node.js 18+ (with npm) and rebuild."
        )
    cmd = [npm, "ci" if (Path(js_dir) / "package-lock.json").is_file() else "install",
           "--ignore-scripts", "--no-audit", "--no-fund"]
    log(f"installing the book's JavaScript: {' '.join(cmd[1:])} (in {js_dir})")
    proc = subprocess.run(cmd, cwd=js_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`npm ci` failed in {js_dir} (exit {proc.returncode}); the pages cannot work offline "
            f"without these files. npm said:\n{proc.stderr.strip()[-2000:]}"
        )
    return node_modules


def _copy_if_changed(src: Path, dst: Path) -> int:
    """Copy a file unless ``dst`` already has the same size and mtime; return 1 if copied."""
    try:
        s, d = src.stat(), dst.stat()
        if s.st_size == d.st_size and int(s.st_mtime) == int(d.st_mtime):
            return 0
    except FileNotFoundError:
        pass
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    return 1


def install_js_into_html(node_modules: Path, html_dir: Path) -> int:
    """Copy the vendored JavaScript into ``<html_dir>/_static/vendor``; return how many files changed."""
    vendor = Path(html_dir) / "_static" / "vendor"
    copied = 0
    for src_rel, dst_rel in JS_ASSETS:
        src = Path(node_modules) / src_rel
        if src.is_file():
            copied += _copy_if_changed(src, vendor / dst_rel)
            continue
        for path in src.rglob("*"):
            if path.is_file() and not path.name.endswith(_HTML_MANAGER_SKIP):
                copied += _copy_if_changed(path, vendor / dst_rel / path.relative_to(src))
    # embed-amd.js asks for its icon fonts relative to the *page* (require.js resolves
    # "@jupyter-widgets/..." against the page's folder), so every folder holding pages gets a copy.
    fonts = [p for p in (Path(node_modules) / "@jupyter-widgets/html-manager/dist").glob("*")
             if p.suffix in _FONT_SUFFIXES]
    page_dirs = {p.parent for p in Path(html_dir).rglob("*.html") if "_static" not in p.parts}
    for page_dir in sorted(page_dirs):
        for font in fonts:
            for sub in ("@jupyter-widgets/html-manager/dist", "@jupyter-widgets"):
                copied += _copy_if_changed(font, page_dir / sub / font.name)
    return copied
