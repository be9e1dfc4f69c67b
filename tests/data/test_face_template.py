"""learn_face_template with the real YuNet detector on real photographs written in a real layout.

The crops are similarity transforms (small shifts, scales and rotations) of the face in
``skimage.data.astronaut()``, written as JPEG and PNG into a ``train/<class>/`` tree.  Each test
detects the landmarks itself, image by image (the runtime's detector on the decoded BGR file, the
landmarks the runtime aligns with), and compares with what learn_face_template made of them.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from corese_edge.data.face_template import DETECT_MIN_SIDE, _sample_paths, describe_template, learn_face_template
from corese_edge.data.layouts import load_index
from corese_edge.preprocessing import DEFAULT_FACE_TEMPLATE

skimage_data = pytest.importorskip("skimage.data")

#: the astronaut's face in the 512 x 512 photo: centre of the eyes and mouth, and a crop side
#: that frames it like an aligned FER crop (the face box is ~90 px wide)
FACE_CENTRE = (222.0, 116.0)
FACE_SIDE = 130.0


def _write_crops(root: Path, side: int, n: int = 32, seed: int = 0) -> Path:
    """``n`` transformed crops of the astronaut's face, ``side`` px, in ``root/{train,test}/<class>/``."""
    photo = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    rng = np.random.default_rng(seed)
    for i in range(n):
        angle, scale = rng.uniform(-12, 12), rng.uniform(0.88, 1.12)
        dx, dy = rng.uniform(-0.07, 0.07, 2) * side
        m = cv2.getRotationMatrix2D(FACE_CENTRE, angle, scale * side / FACE_SIDE)
        m[:, 2] += (side / 2 - FACE_CENTRE[0] + dx, side / 2 - FACE_CENTRE[1] + dy)
        crop = cv2.warpAffine(photo, m, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        split = "test" if i % 8 == 7 else "train"
        name = ("happy", "neutral")[i % 2]
        path = root / split / name / f"face_{i:03d}{'.png' if i % 3 == 0 else '.jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), crop)
    return root


def _eyes_mouth(bgr: np.ndarray, detector) -> np.ndarray | None:
    """Right eye, left eye and mouth centre (pixels) of the largest face in a BGR image."""
    faces = detector.detect(bgr, color_order="bgr")
    if not faces:
        return None
    lm = np.asarray(max(faces, key=lambda f: f.box[2] * f.box[3]).landmarks, dtype=np.float64)
    return np.stack([lm[0], lm[1], (lm[3] + lm[4]) / 2])


@pytest.fixture(scope="module")
def face_model(shared_face_model) -> Path:
    if shared_face_model is None:
        pytest.skip("the YuNet model is not at ../shared/models")
    return shared_face_model


@pytest.fixture(scope="module")
def detector(face_model):
    from corese_edge.runtime.faces import FaceDetector

    return FaceDetector(face_model)


@pytest.fixture(scope="module")
def crops160(tmp_path_factory) -> Path:
    return _write_crops(tmp_path_factory.mktemp("astronaut160") / "faces", 160)


@pytest.fixture(scope="module")
def train160(crops160, detector) -> tuple[list[Path], list[np.ndarray]]:
    """The train split's paths and the landmarks the test detects on each of them itself."""
    train = [s.path for s in load_index(crops160, "folder").split("train")]
    points = [_eyes_mouth(cv2.imread(str(p)), detector) for p in train]
    return train, [p for p in points if p is not None]


def test_learned_template_is_the_median_of_the_landmarks(train160, detector):
    train, found = train160
    assert len(train) == 28
    template, stats = learn_face_template(train, detector, size=160, progress=False)
    median = np.median(np.stack(found), axis=0)
    err = np.abs(template.points().astype(np.float64) * 160 - median)
    assert err.max() < 0.05, err  # px at the crop size (the issue asks for < 1 px)
    assert template.source == "learned" and template.images == len(found) == stats["found"]
    assert stats["images"] == stats["available"] == 28 and stats["reason"] is None
    q1, q3 = np.percentile(np.stack(found), [25, 75], axis=0)
    assert np.allclose([stats["spread"][n] for n in ("right_eye", "left_eye", "mouth")], (q3 - q1) / 160, atol=1e-4)


def test_template_is_in_the_loader_geometry_of_the_input_size(train160, detector):
    """At input size 224 a landmark at crop pixel x sits at (x + 0.5) * 224 / 160 - 0.5, since the
    loader resizes the whole image (cv2.resize maps pixel centres so)."""
    train, found = train160
    template, _ = learn_face_template(train, detector, size=224, progress=False)
    median = np.median(np.stack(found), axis=0)
    err = np.abs(template.points().astype(np.float64) * 224 - ((median + 0.5) * 224 / 160 - 0.5))
    assert err.max() < 0.05, err


def test_small_images_are_upscaled_before_detection(tmp_path, detector):
    """40 px crops are detected at DETECT_MIN_SIDE and the landmarks mapped back to 40 px."""
    root = _write_crops(tmp_path / "faces", 40, n=16, seed=1)
    train = [s.path for s in load_index(root, "folder").split("train")]
    template, stats = learn_face_template(train, detector, size=40, progress=False)
    k = DETECT_MIN_SIDE / 40
    pts = []
    for p in train:
        up = cv2.resize(cv2.imread(str(p)), (DETECT_MIN_SIDE, DETECT_MIN_SIDE), interpolation=cv2.INTER_LINEAR)
        found = _eyes_mouth(up, detector)
        if found is not None:
            pts.append((found + 0.5) / k - 0.5)  # back to 40 px pixel centres
    assert len(pts) == stats["found"] >= 12
    err = np.abs(template.points().astype(np.float64) * 40 - np.median(np.stack(pts), axis=0))
    assert err.max() < 0.05, err


def test_images_without_faces_fall_back_to_the_default(tmp_path, detector):
    """Real photographs with no human face (a cup, a rocket, a cat...) plus two face crops: faces on
    2 of 8 images, under the 50 % required, so the default template with the reason."""
    root = tmp_path / "mixed" / "train" / "things"
    root.mkdir(parents=True)
    for name in ("coffee", "rocket", "chelsea", "coins", "gravel", "moon"):
        img = getattr(skimage_data, name)()
        img = np.stack([img] * 3, axis=-1) if img.ndim == 2 else img[..., :3]
        assert cv2.imwrite(str(root / f"{name}.jpg"), cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR))
    faces = _write_crops(tmp_path / "faces", 160, n=2)
    paths = sorted(root.glob("*.jpg")) + sorted(faces.rglob("*.*g"))
    template, stats = learn_face_template(paths, detector, size=100, progress=False)
    assert template == DEFAULT_FACE_TEMPLATE and template.source == "default"
    assert stats["source"] == "default" and stats["images"] == 8 and stats["found"] == 2
    assert stats["reason"] == "faces found on 2 of 8 images (25%), fewer than the 50% required"
    assert "the default because faces found on 2 of 8 images" in describe_template(template, stats)
    # the same images pass with a lower bar, and the medians are those of the two faces
    learned, stats2 = learn_face_template(paths, detector, size=100, progress=False, min_found=0.25)
    assert learned.source == "learned" and learned.images == 2 and stats2["reason"] is None


def test_unreadable_images_count_as_tried_without_a_face(train160, detector, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    train = train160[0][:3]
    template, stats = learn_face_template(train + [bad], detector, size=160, progress=False)
    assert stats["images"] == 4 and stats["unreadable"] == 1 and stats["found"] == 3
    assert template.source == "learned" and template.images == 3


def test_sample_is_seeded_and_independent_of_order():
    paths = [Path(f"/d/{i:03d}.jpg") for i in range(50)]
    a, n = _sample_paths(paths, 10, seed=3)
    b, _ = _sample_paths(list(reversed(paths)) + paths[:5], 10, seed=3)  # other order, duplicates
    c, _ = _sample_paths(paths, 10, seed=4)
    assert n == 50 and len(a) == 10 and a == b and a != c
    assert a == sorted(a, key=str) and set(a) <= set(paths)
    everything, n = _sample_paths(paths[:7], 10, seed=3)
    assert everything == paths[:7] and n == 7


def test_bad_arguments_are_refused(detector):
    with pytest.raises(ValueError, match="sample"):
        learn_face_template([], detector, sample=0)
    with pytest.raises(ValueError, match="min_found"):
        learn_face_template([], detector, min_found=1.5)
    template, stats = learn_face_template([], detector, progress=False)
    assert template == DEFAULT_FACE_TEMPLATE and stats["reason"] == "no training images to detect faces on"


def test_the_largest_face_of_an_image_is_the_one_used(tmp_path, detector, face_model):
    """A 320 px face crop with a second, smaller copy of the face pasted in a corner: the template
    comes from the large face only."""
    big = cv2.imread(str(sorted(_write_crops(tmp_path / "one", 320, n=1).rglob("*.*g"))[0]))
    canvas = big.copy()
    canvas[8:8 + 96, 8:8 + 96] = cv2.resize(big, (96, 96), interpolation=cv2.INTER_AREA)
    path = tmp_path / "two_faces.png"
    assert cv2.imwrite(str(path), canvas)
    h, w = canvas.shape[:2]
    yunet = cv2.FaceDetectorYN.create(str(face_model), "", (w, h), 0.6, 0.3)
    faces = yunet.detect(canvas)[1]
    assert faces is not None and len(faces) == 2  # both faces are found
    template, _ = learn_face_template([path], detector, size=320, progress=False)
    expected = _eyes_mouth(canvas, detector)  # the largest one
    assert np.abs(template.points() * 320 - expected).max() < 0.05
