"""The face template travels with the preprocessing: checkpoint, ONNX metadata, TensorRT plan
sidecar, OpenVINO rt_info; older records, import-seed and ``faces template`` (which writes a
copy of a checkpoint with a recomputed template and never touches the input)."""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from corese_edge.cli import cli
from corese_edge.metadata import ArtifactMetadata
from corese_edge.model.checkpoint import load_checkpoint
from corese_edge.preprocessing import DEFAULT_FACE_TEMPLATE, FaceTemplate, Preprocessing
from corese_edge.runtime.openvino import shared_core

#: a learned template unlike the default in every number, so a lost template cannot pass
LEARNED = FaceTemplate(right_eye=(0.3412, 0.4321), left_eye=(0.6789, 0.4123), mouth=(0.4987, 0.7654),
                       source="learned", images=123)


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def learned_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt.preprocessing = replace(ckpt.preprocessing, face_template=LEARNED)
    return ckpt.save(tmp_path_factory.mktemp("learned") / "learned.pt")


@pytest.fixture(scope="module")
def learned_onnx(learned_checkpoint, tmp_path_factory) -> Path:
    from corese_edge.export.onnx_fp32 import export_onnx

    return export_onnx(learned_checkpoint, tmp_path_factory.mktemp("learned_onnx") / "model.onnx")


def test_checkpoint_round_trip(learned_checkpoint):
    assert LEARNED != DEFAULT_FACE_TEMPLATE
    loaded = load_checkpoint(learned_checkpoint).preprocessing.face_template
    assert loaded == LEARNED and loaded.source == "learned" and loaded.images == 123


@pytest.mark.slow
def test_onnx_metadata_round_trip(learned_onnx):
    from corese_edge.export.onnx_fp32 import read_metadata

    assert read_metadata(learned_onnx).preprocessing.face_template == LEARNED


@pytest.mark.slow
def test_plan_sidecar_round_trip(learned_onnx, tmp_path):
    """build_engine (with the contract fake of TensorRT 10.x) writes the sidecar; the runtime's
    PlanSidecar.read reads it back."""
    from corese_edge.export import tensorrt as T
    from corese_edge.runtime.trt import PlanSidecar
    from tests.export.fake_tensorrt import make_fake_tensorrt

    built = T.build_engine(learned_onnx, tmp_path / "model.plan", 1, 2, 4, trt=make_fake_tensorrt("10.3.0"),
                           gpu=T.GpuInfo("NVIDIA L4 (fake)", "8.9"))
    assert json.loads(built.sidecar.read_text())["preprocessing"]["face_template"]["source"] == "learned"
    assert PlanSidecar.read(built.sidecar).preprocessing.face_template == LEARNED


def test_openvino_rt_info_round_trip(tmp_path):
    ov = pytest.importorskip("openvino")
    from openvino import opset13 as ops

    from corese_edge.metadata import read_rt_info, write_rt_info

    x = ops.parameter([1, 3, 8, 8], ov.Type.f32, name="input")
    model = ov.Model([ops.relu(x)], [x], "tiny")
    meta = ArtifactMetadata(("a", "b"), Preprocessing(size=8, face_template=LEARNED), "coresse-lite", "0" * 64, "test")
    write_rt_info(model, meta.to_props(), {"precision": "fp32"})
    ov.save_model(model, tmp_path / "tiny.xml")
    back, build = read_rt_info(shared_core().read_model(tmp_path / "tiny.xml"), "tiny.xml")
    assert back.preprocessing.face_template == LEARNED and build == {"precision": "fp32"}


def test_records_older_than_templates_get_the_default(tiny_checkpoint, tmp_path):
    raw = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    raw["preprocessing"].pop("face_template")
    torch.save(raw, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").preprocessing.face_template == DEFAULT_FACE_TEMPLATE
    props = ArtifactMetadata(("a",), Preprocessing(size=8), "m", "", "0").to_props()
    old = json.loads(props["preprocessing"])
    old.pop("face_template")
    props["preprocessing"] = json.dumps(old)
    template = ArtifactMetadata.from_props(props).preprocessing.face_template
    assert template == DEFAULT_FACE_TEMPLATE and template.source == "default"


def test_import_seed_records_the_default(tiny_checkpoint, tmp_path):
    from corese_edge.model.seed import import_seed

    seed_file = tmp_path / "epoch_3.pth"  # the seed notebook's per-epoch format, coresse-lite weights
    torch.save({"epoch": 3, "model_state": load_checkpoint(tiny_checkpoint).state_dict}, seed_file)
    import_seed(seed_file, tmp_path / "imported.pt", 7, img_size=32)
    template = load_checkpoint(tmp_path / "imported.pt").preprocessing.face_template
    assert template == DEFAULT_FACE_TEMPLATE and template.source == "default" and template.images == 0


# ------------------------------------------------------------------- corese-edge faces template
def _run(*args: str):
    return CliRunner().invoke(cli, ["faces", "template", *args])


def _one_line_error(res, *fragments: str) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.mark.slow
def test_faces_template_writes_a_copy_with_the_recomputed_template(tiny_checkpoint, synthetic_data, tmp_path):
    from corese_edge.data.face_template import learn_face_template
    from corese_edge.data.layouts import load_index
    from corese_edge.runtime.faces import FaceDetector

    src = tmp_path / "model.pt"
    shutil.copy(tiny_checkpoint, src)
    before = _sha(src)
    res = _run("--checkpoint", str(src), "--data", str(synthetic_data), "--images", "24", "--no-progress")
    assert res.exit_code == 0, res.output
    copy = tmp_path / "model.template.pt"
    assert f"wrote {copy}" in res.output and "face template learned from" in res.output and "spread" in res.output
    assert _sha(src) == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.template.pt"]

    # the same template as learn_face_template on the train split, sample 24, the checkpoint's seed (0)
    paths = [s.path for s in load_index(synthetic_data).split("train")]
    expected, stats = learn_face_template(paths, FaceDetector(), sample=24, seed=0, size=32, progress=False)
    got, original = load_checkpoint(copy), load_checkpoint(src)
    assert expected.source == "learned" and got.preprocessing.face_template == expected
    assert original.preprocessing.face_template == DEFAULT_FACE_TEMPLATE
    assert got.dataset["face_template"]["found"] == stats["found"] and got.dataset["face_template"]["images"] == 24
    # everything else is the input's
    assert replace(got.preprocessing, face_template=DEFAULT_FACE_TEMPLATE) == original.preprocessing
    assert got.class_names == original.class_names and got.kind == original.kind
    assert all(torch.equal(got.state_dict[k], v) for k, v in original.state_dict.items())


def test_faces_template_bad_paths_are_one_line(tiny_checkpoint, synthetic_data, tmp_path):
    src = tmp_path / "model.pt"
    shutil.copy(tiny_checkpoint, src)
    before = _sha(src)
    _one_line_error(_run("--checkpoint", str(tmp_path / "nope.pt"), "--data", str(synthetic_data)), "nope.pt")
    _one_line_error(_run("--checkpoint", str(src), "--data", str(tmp_path / "no-data")), "no-data")
    _one_line_error(_run("--checkpoint", str(src)), "records no dataset", "--data")
    _one_line_error(_run("--checkpoint", str(src), "--data", str(synthetic_data), "--out", str(src)), "input checkpoint")
    _one_line_error(_run("--checkpoint", str(src), "--data", str(synthetic_data), "--out", str(tmp_path)), "folder")
    _one_line_error(_run("--checkpoint", str(src), "--data", str(synthetic_data), "--face-model", str(tmp_path / "x.onnx")),
                    "face model not found", "x.onnx")
    assert _sha(src) == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


@pytest.mark.slow
def test_faces_template_reproduces_the_template_of_a_training_run(trained_run, tmp_path):
    """On the run's own dataset, with the run's sample size and seed (the defaults), the command
    recomputes exactly the template training stored."""
    res = _run("--checkpoint", str(trained_run.swa_path), "--out", str(tmp_path / "again.pt"), "--no-progress")
    assert res.exit_code == 0, res.output
    run = load_checkpoint(trained_run.swa_path)
    again = load_checkpoint(tmp_path / "again.pt")
    assert run.preprocessing.face_template.source == "learned"
    assert again.preprocessing.face_template == run.preprocessing.face_template
    assert again.dataset["face_template"]["images"] == run.dataset["face_template"]["images"]
