"""ExpressionClassifier(faces=True) and ``predict --faces``: every face, aligned to the template the
model carries, largest first; no face -> no prediction and a count; JSON with boxes and landmarks."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from corese_edge.cli import cli
from corese_edge.preprocessing import FaceTemplate
from corese_edge.runtime import ExpressionClassifier
from corese_edge.runtime.faces import align_face, crop_box
from tests.runtime.test_faces_align import astronaut, detector  # noqa: F401  (session fixtures)

#: A template unlike the default, so a classifier that ignored the model's own would be caught.
MODEL_TEMPLATE = FaceTemplate(right_eye=(0.36, 0.44), left_eye=(0.64, 0.43), mouth=(0.5, 0.77), source="learned", images=300)


@pytest.fixture(scope="session")
def templated_onnx(tiny_onnx, tmp_path_factory) -> Path:
    """``tiny_onnx`` whose metadata carries :data:`MODEL_TEMPLATE` (as a trained run's export would)."""
    import onnx

    from corese_edge.preprocessing import Preprocessing

    model = onnx.load(str(tiny_onnx))
    for prop in model.metadata_props:
        if prop.key == "preprocessing":
            prep = Preprocessing.from_json(prop.value)
            prop.value = Preprocessing(**{**prep.__dict__, "face_template": MODEL_TEMPLATE}).to_json()
    out = tmp_path_factory.mktemp("templated") / "model.onnx"
    onnx.save(model, str(out))
    return out


@pytest.fixture(scope="session")
def two_faces(astronaut):  # noqa: F811
    """The photograph (right) and a 0.6x copy (left) on one canvas: two faces, the right one larger."""
    small = cv2.resize(astronaut, (307, 307), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 512 + 307 + 40, 3), 90, np.uint8)
    canvas[:, 347:] = astronaut
    canvas[100:407, :307] = small
    return canvas


def test_each_face_is_classified_on_its_aligned_crop_largest_first(templated_onnx, two_faces, detector):  # noqa: F811
    with ExpressionClassifier.from_artifact(templated_onnx, faces=True, face_detector=detector) as clf:
        assert clf.preprocessing.face_template == MODEL_TEMPLATE
        preds = clf.predict(two_faces)
        [per_image] = clf.predict_faces(two_faces)
    with ExpressionClassifier.from_artifact(templated_onnx, faces=True, align=False, face_detector=detector) as boxed:
        box_preds = boxed.predict(two_faces)
    with ExpressionClassifier.from_artifact(templated_onnx) as plain:
        size = plain.preprocessing.size
        faces = detector.detect(two_faces)
        expected = plain.predict([align_face(two_faces, f, MODEL_TEMPLATE, size)[0] for f in faces])
        expected_box = plain.predict([crop_box(two_faces, f, size) for f in faces])
    assert len(preds) == 2 and [p.face for p in preds] == [0, 1] and [p.image for p in preds] == [0, 0]
    assert preds[0].box[2] > preds[1].box[2] and preds[0].box[0] > 307  # largest (right-hand) face first
    for p, f, e in zip(preds, faces, expected):
        assert p.box == pytest.approx(f.box) and p.landmarks.shape == (5, 2)
        np.testing.assert_allclose(p.landmarks, f.landmarks)
        np.testing.assert_allclose(p.probs, e.probs, atol=1e-6)  # classified the crop aligned to the model's template
        assert p.label == e.label and p.score == pytest.approx(f.score)
    assert [p.probs.tolist() for p in per_image] == [p.probs.tolist() for p in preds]
    for p, e in zip(box_preds, expected_box):
        np.testing.assert_allclose(p.probs, e.probs, atol=1e-6)  # align=False: the plain box crop
    assert not np.allclose(box_preds[0].probs, preds[0].probs, atol=1e-4)  # and it is a different crop


def test_no_face_gives_no_prediction(tiny_onnx, astronaut, detector):  # noqa: F811
    blank = np.full((200, 200, 3), 128, np.uint8)
    with ExpressionClassifier.from_artifact(tiny_onnx, faces=True, face_detector=detector) as clf:
        assert clf.predict(blank) == []
        per_image = clf.predict_faces([blank, astronaut, blank])
    assert [len(p) for p in per_image] == [0, 1, 0] and per_image[1][0].image == 1
    with ExpressionClassifier.from_artifact(tiny_onnx) as plain:  # without faces: one per image, as before
        assert [len(p) for p in plain.predict_faces([blank, astronaut])] == [1, 1]
        assert [p.image for p in plain.predict([blank, astronaut])] == [0, 1]


@pytest.fixture
def photo_folder(tmp_path, astronaut, two_faces):  # noqa: F811
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_astronaut.png"), astronaut[:, :, ::-1])
    cv2.imwrite(str(folder / "b_blank.png"), np.full((120, 160, 3), 200, np.uint8))
    cv2.imwrite(str(folder / "c_two.png"), two_faces[:, :, ::-1])
    return folder


def test_predict_faces_json_lists_every_face_with_box_and_landmarks(templated_onnx, photo_folder, detector):  # noqa: F811
    result = CliRunner().invoke(cli, ["predict", str(photo_folder), "--model", str(templated_onnx), "--faces", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["faces"] is True and doc["align"] is True and doc["face_template"] == MODEL_TEMPLATE.to_dict()
    rows = doc["predictions"]
    assert [(Path(r["input"]).name, r["face"]) for r in rows] == [("a_astronaut.png", 0), ("c_two.png", 0), ("c_two.png", 1)]
    for r in rows:
        assert len(r["box"]) == 4 and np.array(r["landmarks"]).shape == (5, 2)
        assert r["label"] in doc["class_names"] and sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    with ExpressionClassifier.from_artifact(templated_onnx, faces=True, face_detector=detector) as clf:
        direct = clf.predict(photo_folder / "c_two.png")
    for r, p in zip(rows[1:], direct):
        assert r["box"] == pytest.approx(p.box, abs=0.01) and r["label"] == p.label
        assert r["probs"][p.label] == pytest.approx(float(p.probs[p.index]), abs=1e-6)
    assert [Path(n["input"]).name for n in doc["no_face"]] == ["b_blank.png"]
    assert result.stderr.strip() == f"no face found in 1 of 3 images ({photo_folder / 'b_blank.png'})"


def test_predict_faces_no_align_and_table(templated_onnx, photo_folder):
    runs = {}
    for flag in ("--align", "--no-align"):
        result = CliRunner().invoke(cli, ["predict", str(photo_folder / "c_two.png"), "--model", str(templated_onnx),
                                          "--faces", flag, "--json"])
        assert result.exit_code == 0, result.output
        runs[flag] = json.loads(result.stdout)
    assert runs["--align"]["align"] is True and runs["--no-align"]["align"] is False
    aligned, boxed = (np.array([list(r["probs"].values()) for r in runs[f]["predictions"]]) for f in ("--align", "--no-align"))
    assert aligned.shape == boxed.shape == (2, 7) and not np.allclose(aligned, boxed, atol=1e-4)  # a different crop
    table = CliRunner().invoke(cli, ["predict", str(photo_folder), "--model", str(templated_onnx), "--faces"])
    assert table.exit_code == 0, table.output
    lines = table.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["input", "frame", "label", "conf"] and len(lines) == 1 + 3
    assert "no face found in 1 of 3 images" in table.stderr


def test_one_image_without_a_face_is_one_clear_line(tiny_onnx, photo_folder):
    result = CliRunner().invoke(cli, ["predict", str(photo_folder / "b_blank.png"), "--model", str(tiny_onnx), "--faces"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr.strip() == f"no face found in {photo_folder / 'b_blank.png'}"


def test_face_options_need_faces_and_a_real_model_file(tiny_onnx, photo_folder, tmp_path):
    img = str(photo_folder / "a_astronaut.png")
    result = CliRunner().invoke(cli, ["predict", img, "--model", str(tiny_onnx), "--no-align"])
    assert result.exit_code == 2 and "add --faces" in result.output
    result = CliRunner().invoke(cli, ["predict", img, "--model", str(tiny_onnx), "--faces", "--face-model", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert "face model not found" in line and "x.onnx" in line
