"""YuNet detection and similarity alignment on a real photograph (skimage's astronaut, one face).

The model file comes from ``$CORESE_EDGE_FACE_MODEL`` (tests/conftest.py points it at
``../shared/models``), so these run the real detector offline.

Alignment accuracy is measured by *re-detecting* the face on each aligned crop (averaged over the
crop and its mirror image, at two paddings, to quiet YuNet's own landmark noise) rather than by
pushing the landmarks through the matrix, which would only check the arithmetic.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from corese_edge.preprocessing import DEFAULT_FACE_TEMPLATE, FaceTemplate
from corese_edge.runtime.faces import (
    Face,
    FaceDetector,
    align_face,
    crop_box,
    map_points,
    similarity_transform,
    template_points,
)

#: Aligned crop side used by the accuracy test (a typical model input size).
SIZE = 224
#: Canvas background outside the placed photograph.
GREY = (90, 90, 90)
#: (rotation deg, scale, where the face centre goes as fractions of the canvas): the issue's
#: transformed set, rotated by +-20 deg, scaled x0.5-x2, shifted inside a larger canvas.
CASES = [(0, 1.0, (0.5, 0.5)), (20, 1.0, (0.3, 0.4)), (-20, 1.0, (0.7, 0.6)), (0, 0.5, (0.2, 0.2)), (0, 2.0, (0.5, 0.5)),
         (20, 0.5, (0.8, 0.3)), (-20, 2.0, (0.4, 0.5)), (-20, 0.5, (0.5, 0.5)), (20, 2.0, (0.6, 0.6))]


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) provides the test photograph")
    return np.ascontiguousarray(data.astronaut())  # (512, 512, 3) RGB uint8, one frontal face


@pytest.fixture(scope="session")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="session")
def astronaut_face(astronaut, detector) -> Face:
    [face] = detector.detect(astronaut)
    return face


def place(image: np.ndarray, centre: np.ndarray, rot: float, scale: float, canvas=(800, 600), at=(0.5, 0.5)):
    """``image`` rotated by ``rot`` deg and scaled about ``centre``, moved so ``centre`` lands at
    ``at`` (fractions of ``canvas`` (w, h)); returns the canvas and the (2, 3) image->canvas matrix."""
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), rot, scale)
    m[:, 2] += np.array([canvas[0] * at[0], canvas[1] * at[1]]) - np.asarray(centre, dtype=np.float64)
    out = cv2.warpAffine(image, m, canvas, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=GREY)
    return out, m


def redetect(detector: FaceDetector, crop: np.ndarray) -> np.ndarray:
    """``(3, 2)`` eyes and mouth centre found on ``crop`` itself: YuNet on the crop and its mirror,
    each padded by 0 and 12 px (replicated), averaged."""
    points = []
    for pad in (0, 12):
        for mirrored in (False, True):
            image = np.ascontiguousarray(crop[:, ::-1] if mirrored else crop)
            image = cv2.copyMakeBorder(image, pad, 12 - pad, pad, 12 - pad, cv2.BORDER_REPLICATE)
            faces = detector.detect(image)
            assert faces, "the face was not found again on its own crop"
            p = faces[0].eyes_mouth() - pad
            if mirrored:
                p = p[[1, 0, 2]]
                p[:, 0] = crop.shape[1] - 1 - p[:, 0]
            points.append(p)
    return np.mean(points, axis=0)


def errors_pct(points: np.ndarray, template: FaceTemplate, size: int) -> np.ndarray:
    """Distance of each of the 3 points from the template, in % of the crop side."""
    return np.linalg.norm(points - template_points(template, size), axis=1) / size * 100.0


# -- the similarity fit ----------------------------------------------------------------------------
def test_similarity_transform_recovers_a_similarity_and_never_reflects():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (3, 2))
    angle, scale, shift = np.deg2rad(23.0), 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = similarity_transform(src, src @ rot.T + shift)
    np.testing.assert_allclose(m, np.hstack([rot, shift[:, None]]), atol=1e-9)
    # a mirrored target cannot be reached without a reflection: the fit stays a rotation + scale
    mirrored = src * np.array([-1.0, 1.0])
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0
    assert m[0, 0] == pytest.approx(m[1, 1]) and m[0, 1] == pytest.approx(-m[1, 0])


# -- detection -------------------------------------------------------------------------------------
def test_detects_the_astronaut_with_landmarks_in_yunets_order(astronaut, detector, astronaut_face):
    face = astronaut_face
    x, y, w, h = face.box
    lm = face.landmarks
    assert lm.shape == (5, 2) and lm.dtype == np.float32 and face.score > 0.8
    assert np.all((lm[:, 0] > x) & (lm[:, 0] < x + w) & (lm[:, 1] > y) & (lm[:, 1] < y + h))
    # right eye (subject's right) left of the left eye; eyes above the nose above the mouth corners
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
    assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])
    np.testing.assert_allclose(face.eyes_mouth()[2], (lm[3] + lm[4]) / 2)
    [bgr] = detector.detect(np.ascontiguousarray(astronaut[:, :, ::-1]), color_order="bgr")
    np.testing.assert_allclose(bgr.landmarks, lm, atol=1e-3)


def test_no_face_in_a_blank_image(detector):
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []


def test_boxes_and_landmarks_come_back_in_the_frames_pixels(astronaut, astronaut_face):
    """A known scale and shift: the face found in the canvas is the original's, moved by it."""
    plain = FaceDetector(refine=False)
    [ref] = plain.detect(astronaut)
    canvas, m = place(astronaut, ref.eyes_mouth().mean(axis=0), 0.0, 0.75, canvas=(640, 480), at=(0.3, 0.6))
    [face] = plain.detect(canvas)
    eye_distance = 0.75 * float(np.linalg.norm(ref.landmarks[1] - ref.landmarks[0]))
    expected_box = map_points(m, np.array([ref.box[:2]]))[0]
    assert np.abs(np.array(face.box[:2]) - expected_box).max() < 0.1 * eye_distance
    np.testing.assert_allclose(face.box[2:], 0.75 * np.array(ref.box[2:]), rtol=0.06)
    assert np.abs(face.landmarks - map_points(m, ref.landmarks)).max() < 0.15 * eye_distance


@pytest.mark.parametrize("refine", [False, True])
def test_large_frames_are_downscaled_for_detection_and_mapped_back(astronaut, refine):
    """The photograph x3 (1536 px) inside a 2400x1536 frame at x = 500: detection runs on a 640 px
    copy, and the face comes back where the x3 original's face is."""
    det = FaceDetector(max_side=640, refine=refine)
    [ref] = det.detect(astronaut)
    frame = np.full((1536, 2400, 3), 90, np.uint8)
    frame[:, 500:2036] = cv2.resize(astronaut, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    [face] = det.detect(frame)
    # back to the original's pixels: undo the shift, then the x3 resize (pixel centres)
    landmarks = (face.landmarks - [500, 0] + 0.5) / 3.0 - 0.5
    box_xy = (np.array(face.box[:2]) - [500, 0] + 0.5) / 3.0 - 0.5
    eye_distance = float(np.linalg.norm(ref.landmarks[1] - ref.landmarks[0]))  # ~47 px
    # YuNet's own landmark noise between two renderings of a face is up to ~13 % of the eye
    # distance without refinement (measured); a mapping error would be tens of pixels
    tolerance = (0.12 if refine else 0.2) * eye_distance
    assert np.abs(landmarks - ref.landmarks).max() < tolerance
    assert np.abs(box_xy - ref.box[:2]).max() < 0.2 * eye_distance
    np.testing.assert_allclose(np.array(face.box[2:]) / 3.0, ref.box[2:], rtol=0.08)


def test_several_faces_come_largest_first(astronaut, detector, astronaut_face):
    """Two copies of the photograph side by side, the right one at 0.6x: both found, big one first."""
    small = cv2.resize(astronaut, (307, 307), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 512 + 307 + 40, 3), 90, np.uint8)
    canvas[:, 40 + 307:] = astronaut
    canvas[100:407, :307] = small
    faces = detector.detect(canvas)
    assert len(faces) == 2
    big, little = faces
    assert big.area > little.area
    assert big.box[0] > 307 and little.box[0] < 307  # the large face is the right-hand copy
    np.testing.assert_allclose(big.landmarks - [347, 0], astronaut_face.landmarks, atol=0.1 * 47)


# -- alignment ---------------------------------------------------------------------------------------
def test_align_face_fills_the_crop_with_replicated_border(astronaut, astronaut_face):
    # the face pushed into the top-left corner: the aligned crop reaches past the frame's edge
    corner = np.maximum(astronaut[90:, 150:], 20)  # no black pixel of its own
    moved = Face(tuple(np.subtract(astronaut_face.box, (150, 90, 0, 0))), astronaut_face.score,
                 astronaut_face.landmarks - np.float32([150, 90]))
    crop, m = align_face(corner, moved, DEFAULT_FACE_TEMPLATE, 112)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8 and m.shape == (2, 3)
    np.testing.assert_allclose(map_points(m, moved.eyes_mouth()) / 112, DEFAULT_FACE_TEMPLATE.points(), atol=0.03)
    assert (crop.sum(axis=2) > 0).all()  # no black fill: the edge pixels are replicated
    box = crop_box(corner, moved, 64)
    assert box.shape == (64, 64, 3) and (box.sum(axis=2) > 0).all()


def alignment_errors(astronaut, detector, astronaut_face, size: int = SIZE) -> dict:
    """Per case: re-detected eyes/mouth errors (% of the crop) of the aligned crop and of the box
    crop, against the astronaut's own template (the default template aligned, then re-detected) and
    against the default template."""
    crop0, _ = align_face(astronaut, astronaut_face, DEFAULT_FACE_TEMPLATE, size)
    own_points = redetect(detector, crop0) / size
    own = FaceTemplate(tuple(own_points[0]), tuple(own_points[1]), tuple(own_points[2]), source="learned", images=1)
    centre = astronaut_face.eyes_mouth().mean(axis=0)
    out = {}
    for rot, scale, at in CASES:
        canvas, _ = place(astronaut, centre, rot, scale, at=at)
        faces = detector.detect(canvas)
        assert len(faces) == 1, (rot, scale)
        aligned, _ = align_face(canvas, faces[0], own, size)
        boxed = crop_box(canvas, faces[0], size)
        a, b = redetect(detector, aligned), redetect(detector, boxed)
        default_aligned, _ = align_face(canvas, faces[0], DEFAULT_FACE_TEMPLATE, size)
        out[(rot, scale)] = {
            "aligned": errors_pct(a, own, size),
            "box": errors_pct(b, own, size),
            "aligned_default": errors_pct(redetect(detector, default_aligned), DEFAULT_FACE_TEMPLATE, size),
        }
    return out


@pytest.mark.slow
def test_aligned_crops_put_eyes_and_mouth_on_the_template_and_box_crops_do_not(astronaut, detector, astronaut_face):
    """The issue's bound: rotated +-20 deg, scaled x0.5-x2 and shifted, the aligned crop's eyes and
    mouth centre (mean of the three distances) land within 3 % of the crop side of the template;
    the plain box crop misses that bound wherever the face is rotated."""
    errors = alignment_errors(astronaut, detector, astronaut_face)
    for (rot, scale), e in errors.items():
        assert e["aligned"].mean() <= 3.0, f"rot {rot} scale {scale}: aligned crop {e['aligned'].round(2)} % off the template"
        assert e["aligned"].max() <= 4.5, f"rot {rot} scale {scale}: aligned crop {e['aligned'].round(2)} % off the template"
        if rot:
            assert e["box"].mean() > 3.0, f"rot {rot} scale {scale}: the box crop {e['box'].round(2)} % would pass too"
