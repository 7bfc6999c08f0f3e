"""Safe corpus-path resolution and RGB decoding of corpus images."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from dar_lib.benchmarks.images import load_image, load_images, resolve, to_rgb
from dar_lib.errors import DataError


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "images"
    (r / "unlabeled2017").mkdir(parents=True)
    return r


def test_resolve_inside_root(root):
    path = resolve(root, "unlabeled2017/000000185565.jpg")
    assert path == root.resolve() / "unlabeled2017" / "000000185565.jpg"


def test_dotdot_escape(root):
    with pytest.raises(DataError, match=r"'unlabeled2017/\.\./\.\./etc/passwd' contains '\.\.', "
                                        r"which would escape the image root"):
        resolve(root, "unlabeled2017/../../etc/passwd")


def test_absolute_path(root):
    with pytest.raises(DataError, match=r"'/etc/passwd' is absolute; corpus paths are relative to the image root"):
        resolve(root, "/etc/passwd")
    with pytest.raises(DataError, match="absolute"):
        resolve(root, "C:/images/x.jpg")


def test_symlink_outside_root(root, tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "x.jpg").write_bytes(b"not yours")
    (root / "linked").symlink_to(outside)
    with pytest.raises(DataError, match=r"'linked/x\.jpg' .*outside the image root"):
        resolve(root, "linked/x.jpg")
    # A symlink staying inside the root is fine.
    (root / "alias").symlink_to(root / "unlabeled2017")
    assert resolve(root, "alias/a.jpg") == root.resolve() / "unlabeled2017" / "a.jpg"


def test_backslash_path(root):
    with pytest.raises(DataError, match="backslash"):
        resolve(root, "..\\..\\x.jpg")


def test_missing_image(root):
    path = root / "unlabeled2017" / "000000000001.jpg"
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: image file not found"):
        load_image(path)


def test_undecodable_image(root):
    path = root / "unlabeled2017" / "bad.jpg"
    path.write_bytes(b"<html>not an image</html>")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: cannot decode image"):
        load_image(path)


def test_truncated_jpeg(root):
    path = root / "unlabeled2017" / "cut.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: cannot decode image"):
        load_image(path)


def test_grayscale_to_rgb(root):
    path = root / "gray.png"
    Image.new("L", (4, 3), 77).save(path)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (4, 3)
    assert np.asarray(img).tolist()[0][0] == [77, 77, 77]


def test_cmyk_to_rgb(root):
    path = root / "cmyk.jpg"
    # Pure cyan ink (C=255) is (0, 255, 255) in RGB; JPEG rounding allows a few levels.
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(path, quality=100)
    assert Image.open(path).mode == "CMYK"
    img = load_image(path)
    assert img.mode == "RGB"
    np.testing.assert_allclose(np.asarray(img)[4, 4], [0, 255, 255], atol=3)


def test_rgba_composited_on_white(root):
    path = root / "rgba.png"
    arr = np.zeros((2, 2, 4), dtype=np.uint8)
    arr[0, 0] = [255, 0, 0, 255]  # opaque red stays red
    arr[0, 1] = [255, 0, 0, 0]  # fully transparent red becomes white, not red
    arr[1, 0] = [0, 0, 0, 128]  # half-transparent black becomes mid grey
    arr[1, 1] = [0, 0, 255, 255]
    Image.fromarray(arr, mode="RGBA").save(path)
    out = np.asarray(load_image(path)).astype(int)
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    np.testing.assert_allclose(out[1, 0], [127, 127, 127], atol=1)
    assert out[1, 1].tolist() == [0, 0, 255]


def test_palette_with_transparency(root):
    path = root / "p.png"
    img = Image.new("P", (2, 1))
    img.putpalette([0, 255, 0, 10, 20, 30] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    img.info["transparency"] = 1
    img.save(path, transparency=1)
    out = np.asarray(load_image(path)).tolist()
    assert out[0] == [[0, 255, 0], [255, 255, 255]]


def test_16bit_grayscale_is_scaled_not_clipped():
    img = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    out = np.asarray(to_rgb(img))[0, :, 0].tolist()
    assert out == [0, 127, 255]


def test_load_images_in_order(root):
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        Image.new("RGB", (5, 5), colour).save(root / "unlabeled2017" / f"{i}.png")
    imgs = load_images(root, ["unlabeled2017/1.png", "unlabeled2017/0.png"])
    assert [img.getpixel((2, 2)) for img in imgs] == [(0, 0, 255), (255, 0, 0)]
    with pytest.raises(DataError, match="escape"):
        load_images(root, ["unlabeled2017/0.png", "../x.png"])
