"""``corese-edge demo``: the whole pipeline on the built-in synthetic expression set.

generate the set -> train coresse-lite (small images, a few epochs, SWA) -> evaluate ->
export every CPU candidate with the drift report (``--target cpu-best``: FP32/FP16/INT8 ONNX, and
the OpenVINO float and INT8 IR when the openvino extra is installed; the fastest one that passes
the gate is named) -> benchmark the artifacts -> summary.  Without the openvino extra the demo
says it skipped the OpenVINO artifacts and goes on.  Re-running it reuses the data and a finished run.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    out: str = "corese-demo"
    epochs: int | None = None
    export: bool = True
    train_per_class: int = 200
    test_per_class: int = 50
    img_size: int = 48  # DEMO_IMG_SIZE below; a dataclass default cannot name it before it is defined
    seed: int = 0
    progress: bool = True
    #: seconds of timing per artifact (and batch size) in the cpu-best pick and in the benchmark step
    bench_seconds: float = 1.0

    def __post_init__(self) -> None:
        from corese_edge.errors import UserError

        if self.epochs is not None and self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        if self.img_size < 32:
            raise UserError(f"--img-size must be at least 32 pixels, got {self.img_size}")
        if self.train_per_class < 4 or self.test_per_class < 1:
            raise UserError(f"--images-per-class must be at least 4 (a validation split is carved from train), "
                            f"got {self.train_per_class}")
        if not self.bench_seconds > 0:
            raise UserError(f"--bench-seconds must be more than 0, got {self.bench_seconds}")


#: The demo recipe, chosen by measurement on 2 cores (README, "Demo recipe"): coresse-lite from
#: scratch at 48 px, batch 64, 10 epochs at lr 3e-3, SWA over the last quarter, no Mixup/CutMix
#: (the synthetic cues are clean, and in 10 epochs mixing only slowed convergence).  Everything
#: else is the seed recipe.
DEMO_IMG_SIZE = DemoConfig.img_size
DEMO_EPOCHS = 10
DEMO_LR = 3e-3
DEMO_BATCH = 64
DEMO_MIXUP = 0.0
DEMO_CUTMIX = 0.0


def demo_train_config(data: str | Path, out: str | Path, *, img_size: int = DEMO_IMG_SIZE, epochs: int = DEMO_EPOCHS,
                      seed: int = 0, resume: bool = False, progress: bool = True, **overrides: Any):
    """The demo's ``TrainConfig``; the GPU suite's reference run is built with it too
    (``benchmarks/train_throughput.py``'s ``demo`` setting takes its size and batch from here)."""
    from corese_edge.train import TrainConfig

    options: dict[str, Any] = dict(
        data=str(data), model="coresse-lite", img_size=img_size, epochs=epochs, batch_size=DEMO_BATCH,
        lr=DEMO_LR, mixup=DEMO_MIXUP, cutmix=DEMO_CUTMIX, warmup_epochs=1, pretrained="none",
        # workers=0: measured, 2 workers were slower for this recipe (137 s against 116 s; README,
        # "Demo recipe").  The SIGSEGV once blamed on workers came from OpenVINO's signal stack
        # (docs/ARCHITECTURE.md).
        workers=0, seed=seed, out=str(out), resume=resume, progress=progress,
    )
    options.update(overrides)
    return TrainConfig(**options)


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    from corese_edge.data.synthetic import generate
    from corese_edge.train import train

    t0 = time.perf_counter()
    out = Path(cfg.out)
    click.echo(f"[1/5] synthetic expression faces -> {out / 'data'}")
    data = generate(out / "data", train_per_class=cfg.train_per_class, test_per_class=cfg.test_per_class,
                    size=100, seed=cfg.seed, progress=cfg.progress)
    run_dir = out / "run"
    epochs = cfg.epochs or DEMO_EPOCHS
    resume = (run_dir / "checkpoints" / "last.pt").exists()
    click.echo(f"[2/5] training coresse-lite at {cfg.img_size} px for {epochs} epochs "
               f"(SWA from epoch {int(0.75 * epochs) + 1}){' - resuming' if resume else ''}")
    result = train(demo_train_config(data, run_dir, img_size=cfg.img_size, epochs=epochs, seed=cfg.seed,
                                     resume=resume, progress=cfg.progress))
    t_train = time.perf_counter() - t0
    test = result.report["test"]
    click.echo(f"[3/5] SWA model: test accuracy {test['accuracy']:.2%}, mean class accuracy "
               f"{test['mean_class_accuracy']:.2%} ({test['num_images']} images)")
    summary: dict[str, Any] = {"run": str(run_dir), "test_accuracy": test["accuracy"], "train_time_s": t_train}
    if cfg.export:
        summary.update(_export_and_bench(result.swa_path, out, cfg))
    total = time.perf_counter() - t0
    summary["total_time_s"] = total
    click.echo("\nsummary")
    click.echo(f"  checkpoint        {result.swa_path}")
    click.echo(f"  report            {result.report_path}")
    click.echo(f"  confusion matrix  {run_dir / 'confusion_matrix.png'}")
    click.echo(f"  training curves   {run_dir / 'curves.png'}")
    for key in ("export_dir", "drift_plot", "bench_json", "bench_plot"):
        if key in summary:
            click.echo(f"  {key.replace('_', ' '):<17} {summary[key]}")
    if summary.get("fastest_cpu"):
        click.echo(f"  {'fastest CPU':<17} {summary['fastest_cpu']}")
    click.echo(f"  test accuracy     {test['accuracy']:.2%}")
    click.echo(f"  total time        {total / 60:.1f} min")
    return summary


def _export_and_bench(checkpoint: Path, out: Path, cfg: DemoConfig) -> dict[str, Any]:
    from corese_edge.export.openvino import openvino_unavailable
    from corese_edge.export.pipeline import ExportConfig, run_export

    export_dir = out / "export"
    missing = openvino_unavailable()
    ov = "" if missing else " and OpenVINO float / INT8 IR"
    click.echo(f"[4/5] export: ONNX FP32, FP16 and INT8 (cpu flavour){ov} with the drift report; "
               f"the fastest one within the gate is named -> {export_dir}")
    if missing:
        click.echo(f"      OpenVINO artifacts skipped: {missing}")
    result = run_export(ExportConfig(checkpoint=str(checkpoint), fp16=True, int8=True, target="cpu-best",
                                     calib_size=256, engine=False, out=str(export_dir),
                                     bench_seconds=cfg.bench_seconds, progress=cfg.progress), echo=click.echo)
    info: dict[str, Any] = {"export_dir": str(export_dir), "drift_plot": str(export_dir / "drift.png")}
    winner = result.cpu_best.winner if result.cpu_best is not None else None
    if winner is not None:
        speed = f", {result.cpu_best.speedup:.1f}x model.onnx" if result.cpu_best.speedup else ""
        info["fastest_cpu"] = f"{winner.file} ({winner.runtime} {winner.precision}, {winner.p50_ms:.1f} ms{speed})"
    click.echo("[5/5] benchmark every artifact on this machine (batch 1 and 8)")
    from corese_edge.bench.compare import format_compare, run_compare
    from corese_edge.timing import BenchSettings

    doc, json_path, plot = run_compare(export_dir, BenchSettings(batches=(1, 8), duration_s=cfg.bench_seconds, warmup_ms=100.0),
                                       {"threads": None})
    click.echo(format_compare(doc))
    info["bench_json"] = str(json_path)
    if plot:
        info["bench_plot"] = str(plot)
    return info
