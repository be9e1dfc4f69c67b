"""``corese-edge inspect``: the precision census of an ONNX graph or a plan sidecar, table or JSON."""
from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from corese_edge.cli import cli
from corese_edge.export.census import precision_census
from tests.export.onnx_graphs import int8_conv_model, save


def run(*args):
    return CliRunner().invoke(cli, ["inspect", *map(str, args)])


def test_onnx_table_and_json(tmp_path):
    path = save(int8_conv_model(), tmp_path / "model.int8.onnx")
    census = precision_census(path)
    res = run(path)
    assert res.exit_code == 0, res.output
    assert res.output.strip() == census.table()
    assert "int8" in res.output and "relu" in res.output  # the FP32 Relu is listed by name
    res = run(path, "--json", "--batch", "4")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc == precision_census(path, batch=4).to_dict()
    assert doc["total_flops"] == 4 * census.total_flops and doc["batch"] == 4


def test_plan_reads_the_census_its_sidecar_stores(tmp_path):
    census = precision_census(int8_conv_model()).to_dict()
    plan = tmp_path / "model.int8.plan"
    plan.write_bytes(b"not read")
    (tmp_path / "model.int8.plan.json").write_text(json.dumps({"schema": "corese-edge/plan/1", "census": census}))
    for target in (plan, tmp_path / "model.int8.plan.json"):
        res = run(target)
        assert res.exit_code == 0, res.output
        lines = res.output.splitlines()
        assert lines[0].startswith("precision census of model.int8.plan.json at batch 1: 2 compute nodes")
        assert any(line.split()[:2] == ["int8", "1"] for line in lines)
    assert json.loads(run(plan, "--json").output) == census


def test_user_errors_are_one_line(tmp_path):
    (tmp_path / "old.plan").write_bytes(b"x")
    (tmp_path / "old.plan.json").write_text(json.dumps({"schema": "corese-edge/plan/1"}))
    (tmp_path / "bad.onnx").write_text("not protobuf")
    (tmp_path / "notes.txt").write_text("hello")
    cases = {
        tmp_path / "missing.onnx": "not found",
        tmp_path / "bad.onnx": "not an ONNX model",
        tmp_path / "notes.txt": "not an ONNX model or a plan",
        tmp_path / "old.plan": "holds no precision census",
        tmp_path / "lost.plan": "lost.plan.json not found",
    }
    for path, words in cases.items():
        res = run(path)
        assert res.exit_code == 2, (path, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], res.output


def test_inspect_does_not_import_torch(tmp_path):
    path = save(int8_conv_model(), tmp_path / "m.onnx")
    code = ("import sys\nfrom corese_edge.cli import main\n"
            f"try:\n    main(['inspect', {str(path)!r}])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules, 'torch imported by inspect'\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "precision census of m.onnx" in res.stdout
