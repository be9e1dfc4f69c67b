"""TensorRT on a real GPU: engines built by the export and by build-engine, loaded with their sidecars,
measured for drift, run through ExpressionClassifier, CUDA graphs, and bench --engine.

Skipped (with the reason) unless a CUDA GPU and TensorRT with its builder are present; see
tests/gpu/conftest.py.  Nothing here has run on the machines corese-edge is developed on.
"""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from corese_edge.errors import UserError

from .conftest import GATE_PP

pytestmark = [pytest.mark.gpu, pytest.mark.trt, pytest.mark.slow]

PRECISIONS = ("fp16", "int8")
#: top-1 agreement of an engine with ONNX Runtime on the same graph (INT8: different rounding of the
#: same Q/DQ arithmetic, FP16: different accumulation order)
MIN_AGREEMENT = {"fp16": 0.98, "int8": 0.95}
STAT_KEYS = {"min", "max", "mean", "median", "p90", "p95", "p99", "cv"}


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _trt_major() -> int:
    import tensorrt

    return int(str(tensorrt.__version__).split(".")[0])


def _plan(gpu_export, precision):
    assert precision in gpu_export.engines, f"the export built no {precision} engine; notes: {gpu_export.notes}"
    return gpu_export.engines[precision].plan


# --------------------------------------------------------------------------- building


@pytest.mark.parametrize("precision", PRECISIONS)
def test_export_builds_engine_with_complete_sidecar(gpu_export, gpu_run, precision):
    import tensorrt

    from corese_edge.model.checkpoint import load_checkpoint

    plan = _plan(gpu_export, precision)
    side = json.loads(plan.with_name(plan.name + ".json").read_text())
    onnx_path = gpu_export.out_dir / f"model.{precision}.onnx"
    ckpt = load_checkpoint(gpu_run.swa_path)
    assert plan.stat().st_size > 0
    assert side["precision"] == precision
    assert side["plan_size"] == plan.stat().st_size and side["plan_sha256"] == _sha256(plan)
    assert side["onnx_sha256"] == _sha256(onnx_path)
    assert side["trt_version"] == tensorrt.__version__
    assert side["class_names"] == list(ckpt.class_names)
    assert side["preprocessing"]["size"] == 64
    assert side["profile"]["input"] == {"min": [1, 3, 64, 64], "opt": [8, 3, 64, 64], "max": [32, 3, 64, 64]}
    assert side["gpu_name"] and side["compute_capability"]
    flags = side["build"]["builder_flags"]
    if _trt_major() == 8:
        # weak typing (8.6): the graph's precision must be switched on; an INT8 Q/DQ graph also gets
        # FP16 so that the layers outside Q/DQ pairs need not fall back to FP32 (issue 7, section 1)
        assert side["strongly_typed"] is False
        assert "FP16" in flags and ("INT8" in flags) == (precision == "int8")
    else:
        # strong typing (10.x, always in 11.x): precision comes only from the graph
        assert side["strongly_typed"] is True
        assert not {"FP16", "INT8"} & set(flags)
    assert isinstance(side["gpu_integrated"], bool)
    census = side["census"]
    assert census is not None and census["compute_nodes"] > 0
    # the graph's census travels with the plan (issue 7 targets: INT8 >= 95 % of FLOPs in the INT8
    # artifact; coresse-lite's TensorRT-flavour export measured 99.4 % on the CPU)
    share = census["precisions"][precision]["flop_share"]
    assert share >= 0.95, census["precisions"]
    record = json.loads(gpu_export.export_json.read_text())
    assert record["engines"][precision]["plan"] == plan.name


def test_int8_plan_stores_smaller_weights_than_fp16(gpu_export):
    # INT8 weights take one byte and FP16 weights two; a Q/DQ graph whose convolutions ended up in
    # FP16/FP32 (Q/DQ not fused) would make the INT8 plan as large as the FP16 one, or larger.
    fp16, int8 = _plan(gpu_export, "fp16").stat().st_size, _plan(gpu_export, "int8").stat().st_size
    assert int8 < 0.8 * fp16, f"INT8 plan {int8} B vs FP16 plan {fp16} B"


def test_build_engine_command_with_timing_cache(gpu_export, tmp_path):
    """``corese-edge build-engine`` on the device, twice over one timing cache (the second read it)."""
    from corese_edge.cli import cli
    from corese_edge.runtime.trt import TrtRunner

    onnx_path = tmp_path / "model.int8.onnx"
    shutil.copy(gpu_export.out_dir / "model.int8.onnx", onnx_path)
    cache = tmp_path / "trt.cache"
    for run in range(2):
        plan = tmp_path / f"run{run}.int8.plan"
        result = CliRunner().invoke(cli, ["build-engine", str(onnx_path), "--out", str(plan), "--min-batch", "1",
                                          "--opt-batch", "4", "--max-batch", "8", "--workspace-gb", "1",
                                          "--timing-cache", str(cache)])
        assert result.exit_code == 0, result.output
        assert f"wrote {plan}" in result.output
        assert cache.is_file() and cache.stat().st_size > 0
        side = json.loads(plan.with_name(plan.name + ".json").read_text())
        assert side["build"]["timing_cache"] == str(cache)
        # a cache made on this GPU by this TensorRT must be accepted the second time (no note)
        assert side["build"]["timing_cache_note"] is None, side["build"]["timing_cache_note"]
        assert side["profile"]["input"]["max"] == [8, 3, 64, 64]
    with TrtRunner(plan) as runner:
        assert runner.max_batch == 8
        x = np.zeros((8, 3, 64, 64), np.float32)
        assert runner.infer({"input": x})["logits"].shape == (8, 7)
        with pytest.raises(UserError, match="maximum batch 8"):
            runner.infer({"input": np.zeros((9, 3, 64, 64), np.float32)})


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("precision", PRECISIONS)
def test_plan_loads_with_its_sidecar(gpu_export, gpu_run, precision):
    import tensorrt

    from corese_edge.model.checkpoint import load_checkpoint
    from corese_edge.runtime.trt import TrtRunner

    plan = _plan(gpu_export, precision)
    with TrtRunner(plan) as runner:
        assert runner.precision == precision
        assert runner.trt_version == tensorrt.__version__
        assert runner.metadata.class_names == tuple(load_checkpoint(gpu_run.swa_path).class_names)
        assert runner.metadata.preprocessing.size == 64
        assert [(t.name, np.dtype(t.dtype), t.shape) for t in runner.inputs] == [("input", np.dtype(np.float32), (None, 3, 64, 64))]
        assert [(t.name, t.shape) for t in runner.outputs] == [("logits", (None, 7))]
        assert runner.max_batch == 32
        assert runner.gpu.compute_capability == runner.sidecar.compute_capability


def test_plan_without_sidecar_or_with_a_changed_byte_is_refused(gpu_export, tmp_path):
    from corese_edge.runtime.trt import TrtRunner

    src = _plan(gpu_export, "fp16")
    lonely = tmp_path / "lonely.fp16.plan"
    shutil.copy(src, lonely)
    with pytest.raises(UserError, match="sidecar"):
        TrtRunner(lonely).activate()
    # a flipped byte must be caught by the sidecar's sha256 before TensorRT deserializes anything
    broken = tmp_path / "broken.fp16.plan"
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    broken.write_bytes(bytes(data))
    shutil.copy(src.with_name(src.name + ".json"), broken.with_name(broken.name + ".json"))
    with pytest.raises(UserError, match="sha256"):
        TrtRunner(broken).activate()


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("precision", PRECISIONS)
def test_engine_drift_within_the_gate(gpu_export, precision):
    report = json.loads((gpu_export.out_dir / "drift_report.json").read_text())
    engine, onnx = report["artifacts"][f"trt-{precision}"], report["artifacts"][f"onnx-{precision}"]
    assert report["reference"]["images"] == 350
    # against PyTorch FP32, with the export's default gate
    assert engine["accuracy_drop_pp"] <= GATE_PP, engine
    # and the engine computes what its ONNX describes: it adds no more than the gate on top of it
    assert abs(engine["accuracy"] - onnx["accuracy"]) * 100 <= GATE_PP, (engine, onnx)
    assert engine["agreement"] >= MIN_AGREEMENT[precision]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_classifier_on_plan_agrees_with_onnx_runtime(gpu_export, eval_samples, precision):
    from corese_edge.runtime.classifier import ExpressionClassifier

    paths = [s.path for s in eval_samples]
    labels = np.array([s.label for s in eval_samples])
    # ONNX Runtime with graph optimizations off runs the Q/DQ pairs unfused: the reference arithmetic
    # the export's drift stage uses (its fused S8S8 CPU kernels saturate on CPUs without VNNI)
    onnx_path = gpu_export.out_dir / f"model.{precision}.onnx"
    with ExpressionClassifier.from_artifact(_plan(gpu_export, precision)) as on_trt, \
            ExpressionClassifier.from_artifact(onnx_path, providers="cpu", optimization="disabled") as on_ort:
        assert on_trt.runner.backend == "trt" and on_trt.batch_size == 32
        assert on_trt.class_names == on_ort.class_names
        trt_logits, ort_logits = on_trt.logits(paths), on_ort.logits(paths)  # 350 images: 10 x 32 + 30
        preds = on_trt.predict(paths[:5])
    assert trt_logits.shape == ort_logits.shape == (350, 7)
    agreement = float(np.mean(trt_logits.argmax(1) == ort_logits.argmax(1)))
    assert agreement >= MIN_AGREEMENT[precision], agreement
    acc_trt, acc_ort = float(np.mean(trt_logits.argmax(1) == labels)), float(np.mean(ort_logits.argmax(1) == labels))
    assert abs(acc_trt - acc_ort) * 100 <= GATE_PP, (acc_trt, acc_ort)
    assert acc_trt > 0.5, "the trained model should be far above chance (1/7) on its engine"
    for p in preds:
        assert p.label == on_trt.class_names[p.index] and abs(float(p.probs.sum()) - 1.0) < 1e-5


# --------------------------------------------------------------------------- CUDA graphs


@pytest.mark.parametrize("precision", PRECISIONS)
def test_cuda_graphs_on_and_off_give_identical_outputs(gpu_export, precision):
    """Batch 32, 32, 7, 32, 1: the second 32 replays a graph after the context ran at another shape."""
    from corese_edge.runtime.trt import TrtRunner

    plan = _plan(gpu_export, precision)
    rng = np.random.default_rng(0)
    sequence = (32, 32, 7, 32, 1)
    feeds = [rng.uniform(-1, 1, (b, 3, 64, 64)).astype(np.float32) for b in sequence]
    with TrtRunner(plan, cuda_graph=False) as plain:
        first = [plain.infer({"input": x})["logits"] for x in feeds]
        again = [plain.infer({"input": x})["logits"] for x in feeds]
    with TrtRunner(plan, cuda_graph=True) as graphed:
        assert graphed.cuda_graph is True
        replayed = [graphed.infer({"input": x})["logits"] for x in feeds]
        assert graphed.last_timings["gpu_compute_ms"] > 0
        # a capture that fell back to plain enqueue would make this test compare plain with plain
        assert all(graphed.has_graph(b) for b in set(sequence)), "CUDA graph capture fell back on a real GPU"
    # The engine is normally bit-reproducible from run to run; only if it is not (a tactic with
    # atomics), compare within the spread it shows by itself.
    deterministic = all(np.array_equal(a, b) for a, b in zip(first, again))
    spread = max(float(np.abs(a - b).max()) for a, b in zip(first, again))
    for b, x, want, got in zip(sequence, feeds, first, replayed):
        assert got.shape == (b, 7)
        if deterministic:
            assert np.array_equal(got, want), f"batch {b}: CUDA graph output differs, max |diff| {np.abs(got - want).max()}"
        else:
            assert np.abs(got - want).max() <= 2 * spread, f"batch {b}"
    # different inputs give different outputs, so a stale replay (old shape or old input) cannot pass
    assert not np.allclose(first[0], first[1])


# --------------------------------------------------------------------------- bench --engine


def _check_stats(stats: dict) -> None:
    assert set(stats) == STAT_KEYS, sorted(stats)
    assert stats["min"] <= stats["median"] <= stats["p90"] <= stats["p95"] <= stats["p99"] <= stats["max"]
    assert stats["min"] > 0


def test_bench_engine_writes_trtexec_statistics(gpu_export, tmp_path):
    import tensorrt

    from corese_edge.cli import cli

    plan = _plan(gpu_export, "int8")
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["bench", "--engine", str(plan), "--batch", "1,8", "--warmup-ms", "50",
                                      "--duration-s", "0.5", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "CUDA graph off, transfers included" in result.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == "corese-edge/bench/1"
    assert doc["settings"]["cuda_graph"] is False and doc["settings"]["include_transfers"] is True
    assert doc["settings"]["batches"] == [1, 8]
    assert doc["device"]["gpus"], "the machine record must name the GPU"
    assert doc["device"]["tensorrt_runtime"]["version"] == tensorrt.__version__
    assert [r["batch"] for r in doc["results"]] == [1, 8]
    for r in doc["results"]:
        assert (r["backend"], r["precision"], r["cuda_graph"], r["include_transfers"]) == ("trt", "int8", False, True)
        assert r["iterations"] >= 10 and r["warmup_queries"] >= 1
        for key in ("latency_ms", "gpu_compute_ms", "h2d_ms", "d2h_ms", "enqueue_ms"):
            _check_stats(r[key])
        # latency is H2D + compute + D2H per query, so the means add up (up to rounding)
        parts = r["h2d_ms"]["mean"] + r["gpu_compute_ms"]["mean"] + r["d2h_ms"]["mean"]
        assert r["latency_ms"]["mean"] == pytest.approx(parts, rel=1e-3, abs=1e-3)
        assert r["throughput_ips"] == pytest.approx(r["throughput_qps"] * r["batch"], rel=1e-3)
        assert isinstance(r["warnings"], list)

    # trtexec's TensorRT 11 defaults: CUDA graph on, transfers excluded; latency is then compute alone
    out2 = tmp_path / "bench-graph.json"
    result = CliRunner().invoke(cli, ["bench", "--engine", str(plan), "--batch", "8", "--warmup-ms", "50",
                                      "--iterations", "50", "--cuda-graph", "--no-transfers", "--json", str(out2)])
    assert result.exit_code == 0, result.output
    assert "CUDA graph on, transfers excluded" in result.output
    [r] = json.loads(out2.read_text())["results"]
    assert r["cuda_graph"] is True and r["cuda_graph_captured"] is True
    assert r["include_transfers"] is False and r["iterations"] == 50
    assert "h2d_ms" not in r and "d2h_ms" not in r
    assert r["latency_ms"] == r["gpu_compute_ms"]
