from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from corese_edge.images import IMAGE_SUFFIXES, is_image_file, read_rgb
from corese_edge.data.layouts import Sample, find_bad_images
from corese_edge.errors import DataError
from tests.data.layout_fixtures import write_image


def _rgb_pattern(h: int = 6, w: int = 5) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_png_is_returned_in_rgb_order(tmp_path: Path) -> None:
    rgb = _rgb_pattern()
    rgb[0, 0] = (255, 0, 0)  # pure red in RGB
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = read_rgb(path)
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out, rgb)
    assert tuple(out[0, 0]) == (255, 0, 0)


def test_grayscale_png_becomes_rgb(tmp_path: Path) -> None:
    gray = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
    path = tmp_path / "g.png"
    cv2.imwrite(str(path), gray)
    out = read_rgb(path)
    assert out.shape == (5, 6, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_rgba_png_drops_alpha(tmp_path: Path) -> None:
    rgb = _rgb_pattern()
    alpha = np.full(rgb.shape[:2], 7, np.uint8)
    bgra = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), alpha])
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), bgra)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[2] == 4  # really 4 channels
    out = read_rgb(path)
    assert out.shape == (6, 5, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_png_is_scaled_to_8bit(tmp_path: Path, channels: int) -> None:
    values = np.array([[0, 257 * 128, 65535]], np.uint16)  # -> 0, 128, 255
    img = values if channels == 1 else np.dstack([values] * 3)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), img)
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    out = read_rgb(path)
    assert out.dtype == np.uint8 and out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_jpeg_and_odd_path(tmp_path: Path) -> None:
    path = write_image(tmp_path / "ünï cødé dir" / "face (1).jpg", label=3, size=40)
    out = read_rgb(path)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    assert out.std() > 5  # real content, not a blank


def _truncated_jpeg(tmp_path: Path) -> Path:
    good = write_image(tmp_path / "good.jpg", size=64)
    data = good.read_bytes()
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(data[: len(data) // 2])
    return bad


def _assert_one_line_error(exc: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(exc.value)
    assert str(path) in msg
    assert "--skip-bad-images" in msg
    assert "\n" not in msg


def test_truncated_jpeg_raises_dataerror(tmp_path: Path) -> None:
    bad = _truncated_jpeg(tmp_path)
    with pytest.raises(DataError) as exc:
        read_rgb(bad)
    _assert_one_line_error(exc, bad)


def test_text_file_named_jpg_raises_dataerror(tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not an image\n")
    with pytest.raises(DataError) as exc:
        read_rgb(bad)
    _assert_one_line_error(exc, bad)


def test_empty_and_missing_files_raise_dataerror(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty") as exc:
        read_rgb(empty)
    _assert_one_line_error(exc, empty)
    missing = tmp_path / "missing.png"
    with pytest.raises(DataError, match="not found") as exc:
        read_rgb(missing)
    _assert_one_line_error(exc, missing)


def test_jpeg_cut_just_before_end_marker_is_rejected(tmp_path: Path) -> None:
    good = write_image(tmp_path / "good.jpg", size=64)
    data = good.read_bytes()
    assert data.endswith(b"\xff\xd9")
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(data[:-2])
    with pytest.raises(DataError, match="truncated"):
        read_rgb(bad)
    # trailing bytes after the end marker are harmless
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(data + b"\x00" * 100)
    assert read_rgb(padded).shape == (64, 64, 3)


def test_find_bad_images_finds_exactly_the_bad_ones(tmp_path: Path) -> None:
    good = [write_image(tmp_path / f"ok{i}{suffix}", label=i) for i, suffix in
            enumerate((".jpg", ".png", ".bmp"))]
    truncated = _truncated_jpeg(tmp_path)
    text = tmp_path / "text.jpg"
    text.write_text("hello")
    samples = [Sample(p, 0) for p in good] + [Sample(truncated, 1), Sample(text, 2)]
    samples.append(Sample(truncated, 1))  # listed twice, reported once
    bad = find_bad_images(samples)
    assert [p for p, _ in bad] == [truncated, text]
    assert all(isinstance(reason, str) and reason for _, reason in bad)
    assert find_bad_images([Sample(p, 0) for p in good]) == []


def test_is_image_file() -> None:
    assert IMAGE_SUFFIXES == (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
    for name in ("a.jpg", "b.JPEG", "c.Png", "d.bmp", "e.webp", "f.tif", "g.TIFF"):
        assert is_image_file(name), name
    for name in ("Thumbs.db", ".DS_Store", "notes.txt", "x.jpg.txt", "._a.jpg", "noext"):
        assert not is_image_file(name), name
