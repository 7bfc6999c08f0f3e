"""Corpus images on disk: safe path resolution and decoding to RGB."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Sequence

from PIL import Image, UnidentifiedImageError

from dar_lib.benchmarks.dialogue import check_relative_path
from dar_lib.cachekeys import check_stamp, file_stamp
from dar_lib.errors import DataError

#: Background that transparent pixels are composited onto (encoders expect opaque RGB).
BACKGROUND = (255, 255, 255)
#: Largest corpus image accepted, in pixels (width x height): PIL's own decompression-bomb bound.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
#: Largest accepted ratio of the long side to the short side: a 1 x 1,000,000 px strip would be
#: resized to a square encoder input of millions of pixels per side (a MemoryError), not an image.
MAX_ASPECT = 50


def resolve(image_root: str | os.PathLike, corpus_path: str) -> Path:
    """The file of a corpus path under ``image_root``, refusing anything that leaves the root.

    Corpus paths come from downloaded JSON, so they are treated as untrusted: absolute paths,
    ``..`` components, backslashes and symlinks resolving outside the root are refused.
    The file need not exist yet (the COCO fetcher resolves before downloading).

    Args:
        image_root: folder holding the images, e.g. with ``unlabeled2017/`` inside.
        corpus_path: relative path from the corpus list, e.g. ``"unlabeled2017/000000185565.jpg"``.

    Returns:
        The absolute path, inside ``image_root``.

    Raises:
        DataError: naming the corpus path and the root.
    """
    root = Path(image_root).expanduser()
    where = f"{corpus_path!r} (image root {root})"
    if not isinstance(corpus_path, str) or not corpus_path:
        raise DataError(f"{where}: corpus path must be a non-empty string")
    check_relative_path(corpus_path, where)
    posix = PurePosixPath(corpus_path)
    real_root = root.resolve()
    target = (real_root / posix).resolve()
    # resolve() follows symlinks, so a link inside the root pointing elsewhere is caught here.
    if not target.is_relative_to(real_root):
        raise DataError(f"{where}: resolves to {target}, outside the image root (symlink?)")
    return target


def load_image(path: str | os.PathLike, stamp: Sequence[int] | None = None) -> Image.Image:
    """Decode an image fully and return it in RGB.

    Grayscale, CMYK and palette images are converted to RGB; images with transparency (RGBA,
    LA, palettes with a transparent index) are composited onto a white background rather than
    having alpha dropped, so transparent regions become white instead of whatever colour the
    hidden pixels happen to hold. EXIF orientation is not applied: ChatIR's and DAR's
    evaluations use ``Image.open(...).convert("RGB")``, and the embeddings should match theirs.

    The file is checked with ``os.stat`` before it is opened (a FIFO or device named like an image
    would block a reader forever), and its size is checked from the header before it is decoded.

    Args:
        path: the image file.
        stamp: the file's :func:`~dar_lib.cachekeys.file_stamp` when its cache key was made; the
            bytes decoded must be the stamped ones.

    Returns:
        A loaded ``PIL.Image`` in mode ``"RGB"``.

    Raises:
        DataError: the file is missing, not a regular file, changed since ``stamp``, larger than
            :data:`MAX_PIXELS` or more elongated than :data:`MAX_ASPECT`, or cannot be decoded
            (truncated, not an image), naming it.
    """

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: image file not found")
    file_stamp(path)  # refuses a FIFO, device or folder before opening it
    try:
        with open(path, "rb") as fh:
            if stamp is not None:
                check_stamp(path, stamp, fh)
            with Image.open(fh) as img:
                check_size(img.size, path)
                img.load()
                return to_rgb(img)
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"{path}: image file not found") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot decode image: {exc}") from exc


def check_size(size: tuple[int, int], path) -> None:
    """Refuse an image of more than :data:`MAX_PIXELS` pixels or a side ratio above :data:`MAX_ASPECT`.

    Raises:
        DataError: naming the file, its size and the bound.
    """
    w, h = size
    if w < 1 or h < 1 or w * h > MAX_PIXELS:
        raise DataError(f"{path}: image of {w} x {h} px is outside 1..{MAX_PIXELS:,} pixels")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise DataError(f"{path}: image of {w} x {h} px has a side ratio of {max(w, h) / min(w, h):,.0f}:1, "
                        f"above the bound of {MAX_ASPECT}:1")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded image to RGB (alpha composited on :data:`BACKGROUND`)."""
    if img.mode == "RGB":
        return img.copy()
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # High-bit-depth grayscale: scale to 8 bit instead of letting convert() clip at 255.
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / hi if hi > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), mode="L")
    return img.convert("RGB")


def load_images(image_root: str | os.PathLike, corpus_paths: Sequence[str]) -> list[Image.Image]:
    """Resolve and load several corpus images (call it per batch: the result holds them all).

    Args:
        image_root: folder holding the images.
        corpus_paths: relative corpus paths.

    Returns:
        RGB images in the order of ``corpus_paths``.

    Raises:
        DataError: the first path that escapes the root, is missing or does not decode.
    """
    return [load_image(resolve(image_root, p)) for p in corpus_paths]
