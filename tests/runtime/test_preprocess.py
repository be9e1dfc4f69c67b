"""The runtime's numpy/cv2 preprocessing against training's albumentations eval transform."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from corese_edge.errors import UserError
from corese_edge.preprocessing import Preprocessing
from corese_edge.runtime.preprocess import Preprocessor, as_frames


def _reference(frames, prep):
    from corese_edge.data.transforms import eval_transform, to_chw

    t = eval_transform(prep)
    return np.stack([to_chw(t(image=f)["image"]) for f in frames])


@pytest.mark.parametrize("interpolation", ["linear", "area", "cubic", "nearest"])
@pytest.mark.parametrize("size", [32, 224])
def test_matches_training_eval_transform(interpolation, size):
    pytest.importorskip("albumentations")
    prep = Preprocessing(size=size, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), interpolation=interpolation)
    rng = np.random.default_rng(size)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(100, 100), (37, 81), (size, size), (300, 240)]]
    ours = Preprocessor(prep)(frames)
    ref = _reference(frames, prep)
    assert ours.shape == ref.shape == (4, 3, size, size) and ours.dtype == np.float32
    assert np.abs(ours - ref).max() <= 1e-5


def test_seed_normalisation_range_and_batch_array():
    prep = Preprocessing(size=16)  # mean = std = 0.5
    batch = np.stack([np.zeros((20, 20, 3), np.uint8), np.full((20, 20, 3), 255, np.uint8)])
    x = Preprocessor(prep)(batch)
    assert x.shape == (2, 3, 16, 16)
    assert np.allclose(x[0], -1.0) and np.allclose(x[1], 1.0)


def test_bgr_frames_give_the_same_tensor_as_rgb():
    prep = Preprocessing(size=24)
    rgb = np.random.default_rng(3).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    p = Preprocessor(prep)
    np.testing.assert_array_equal(p(rgb), p(bgr, color_order="bgr"))
    assert not np.array_equal(p(rgb), p(bgr))  # the order matters when the image is not grey


def test_bgr_model_channel_order_is_honoured():
    rgb = np.random.default_rng(4).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    x_rgb = Preprocessor(Preprocessing(size=24, channel_order="rgb"))(rgb)
    x_bgr = Preprocessor(Preprocessing(size=24, channel_order="bgr"))(rgb)
    np.testing.assert_array_equal(x_rgb[:, ::-1], x_bgr)


def test_paths_are_decoded_as_rgb(tmp_path):
    rgb = np.random.default_rng(5).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    p = Preprocessor(Preprocessing(size=30))
    np.testing.assert_array_equal(p(str(path)), p(rgb))
    np.testing.assert_array_equal(p([path], color_order="bgr"), p(rgb))  # paths ignore color_order
    assert as_frames(path, "bgr")[0][0, 0].tolist() == rgb[0, 0, ::-1].tolist()


def test_uint8_input_models_get_resized_nhwc_frames():
    rgb = np.random.default_rng(6).integers(0, 256, (50, 40, 3), dtype=np.uint8)
    out = Preprocessor(Preprocessing(size=32), np.dtype(np.uint8))(rgb)
    assert out.shape == (1, 32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_LINEAR))


def test_non_contiguous_frames_are_accepted():
    big = np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    view = big[::2, ::2]
    p = Preprocessor(Preprocessing(size=16))
    np.testing.assert_array_equal(p(view), p(np.ascontiguousarray(view)))


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((10, 10, 3), np.float32), "expected dtype uint8.*got float32"),
        (np.zeros((10, 10), np.uint8), r"expected shape \(H, W, 3\), got \(10, 10\)"),
        (np.zeros((10, 10, 4), np.uint8), r"expected shape \(H, W, 3\), got \(10, 10, 4\)"),
        (np.zeros((0, 10, 3), np.uint8), "empty image"),
        ([], "the list is empty"),
        (np.zeros((0, 8, 8, 3), np.uint8), "batch array is empty"),
        (42, "cannot preprocess a int"),
        ([np.zeros((8, 8, 3), np.uint8), "x"], "^cannot read image x: file not found$"),
    ],
)
def test_bad_inputs_get_one_clear_error(bad, message):
    with pytest.raises(UserError, match=message):
        Preprocessor(Preprocessing(size=8))(bad)


def test_unreadable_paths_name_the_file(tmp_path):
    p = Preprocessor(Preprocessing(size=8))
    with pytest.raises(UserError, match=r"cannot read image .*missing\.jpg: file not found$"):
        p(tmp_path / "missing.jpg")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(UserError, match=r"cannot read image .*junk\.png: not a decodable image"):
        p([junk])


def test_bad_color_order():
    with pytest.raises(UserError, match="color_order must be 'rgb' or 'bgr'"):
        as_frames(np.zeros((4, 4, 3), np.uint8), "rgba")
