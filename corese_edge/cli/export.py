"""CLI: ``export`` and ``build-engine`` (thin layers over corese_edge.export).

Each command parses its options into one typed config and calls one library function:
``export`` -> :func:`corese_edge.export.make_export_config` + :func:`corese_edge.export.run_export`,
``build-engine`` -> :func:`corese_edge.export.tensorrt.run_build_engine`.  Options left out are
``None`` so that an ``--profile`` can set them; the command line wins over the profile.
"""
from __future__ import annotations

import click

from corese_edge.export.targets import CALIB_METHODS, HARDWARE_COMPAT, QUANTIZERS, TARGETS, VAL_SPLITS, describe_table
from corese_edge.export.tensorrt import engine_defaults

#: build-engine's defaults, stated once: the fields of corese_edge.export.tensorrt.EngineConfig
ENGINE = engine_defaults()

EXPORT_EPILOG = """\b
Examples:
  corese-edge export --int8                          # newest runs/*/swa_final.pt, TensorRT INT8
  corese-edge export --int8 --fp16 --checkpoint runs/rafdb/swa_final.pt --out export/rafdb
  corese-edge export --int8 --target cpu             # U8S8 for ONNX Runtime on a CPU
  corese-edge export --int8 --target openvino        # OpenVINO IR: model.xml (BF16 on AMX) + model.int8.xml (NNCF)
  corese-edge export --target cpu-best               # every CPU candidate, benched here; names the fastest passing one
  corese-edge export --profile jetson-orin-int8      # export/jetson-orin-int8.yaml
  corese-edge export --int8 --calib-data ~/camera_frames --calib-size 1024
  corese-edge export --int8 --auto-keep --max-drift 0.5
  corese-edge export --int8 --keep-fp '/classifier/*' --no-engine
\b
Without TensorRT and a GPU the export stops after the ONNX files and prints the
'corese-edge build-engine' command to run on the target device.
\b
Targets (the first quantizer is the default):
""" + "\n".join("  " + row for row in describe_table().splitlines()) + "\n"

BUILD_ENGINE_EPILOG = """\b
Examples:
  corese-edge build-engine export/model.int8.onnx
  corese-edge build-engine model.fp16.onnx --out model.fp16.plan --max-batch 8
  corese-edge build-engine model.int8.onnx --timing-cache ~/.cache/trt.cache --workspace-gb 2
  corese-edge build-engine model.int8.onnx --hardware-compat ampere+ --version-compatible
\b
Run it on the device that will run the plan: a plan is tied to the GPU architecture and the
TensorRT version (TensorRT 8.6, 10.x and 11.x are supported).
"""


@click.command("export", epilog=EXPORT_EPILOG)
@click.option("--checkpoint", type=click.Path(), help="Checkpoint to export.  [default: newest runs/*/swa_final.pt]")
@click.option("--fp16", is_flag=True, default=None, help="Also write model.fp16.onnx (FP32 inputs/outputs).")
@click.option("--int8", is_flag=True, default=None, help="Also write model.int8.onnx (Q/DQ, calibrated on train).")
@click.option("--target", type=click.Choice(list(TARGETS)),
              help="tensorrt: S8S8 Q/DQ + engine; cpu: U8S8 for ONNX Runtime; openvino: OpenVINO IR (extra [openvino]); "
                   "cpu-best: every CPU candidate (INT8 included), benched here, the fastest passing one named.  [default: tensorrt]")
@click.option("--data", type=click.Path(), help="Dataset folder.  [default: the one recorded in the checkpoint]")
@click.option("--calib-data", type=click.Path(), help="Calibrate on this folder of images (unlabelled is fine) instead of the train split.")
@click.option("--calib-size", type=int, help="Calibration images.  [default: 512]")
@click.option("--calib-method", type=click.Choice(list(CALIB_METHODS)), help="[default: minmax]")
@click.option("--quantizer", type=click.Choice(list(QUANTIZERS)),
              help="ONNX Runtime, NVIDIA ModelOpt (extra [modelopt]) or NNCF (--target openvino; ort there: OpenVINO reads "
                   "the U8S8 Q/DQ ONNX).  [default: the target's first: ort, nncf for openvino]")
@click.option("--val-split", type=click.Choice(list(VAL_SPLITS)), help="Where drift is reported; nothing is chosen on it.  [default: test]")
@click.option("--embed-preprocess", is_flag=True, default=None, help="Also write *.preprocess.onnx taking uint8 NHWC frames.")
@click.option("--max-drift", type=float, help="Largest accuracy drop allowed, in percentage points.  [default: 1.0]")
@click.option("--min-batch", type=int, help=f"[default: {ENGINE['min_batch']}]")
@click.option("--opt-batch", type=int, help=f"[default: {ENGINE['opt_batch']}]")
@click.option("--max-batch", type=int, help=f"[default: {ENGINE['max_batch']}]")
@click.option("--opset", type=int, help="[default: 17]")
@click.option("--profile", help="Export profile: a name in export/ (desktop-fp16, desktop-int8, jetson-orin-int8, cpu-int8) or a YAML path.")
@click.option("--engine/--no-engine", default=None, help="Demand a TensorRT engine (fail without one) / never build one.  [default: build when TensorRT and a GPU are present]")
@click.option("--keep-fp", multiple=True, metavar="NAME_OR_PATTERN", help="Keep matching layers in FP32 (repeatable; fnmatch patterns).")
@click.option("--auto-keep", is_flag=True, default=None, help="If INT8 drifts past --max-drift, keep the fewest sensitive layers in FP32 (chosen on train's validation split).")
@click.option("--out", type=click.Path(), help="Output folder.  [default: export/ beside the checkpoint]")
@click.option("--workspace-gb", type=float, help=f"TensorRT builder workspace.  [default: {ENGINE['workspace_gb']:g}]")
@click.option("--seed", type=int, help="Calibration sampling seed.  [default: 0]")
@click.option("--bench-seconds", type=float, help="--target cpu-best: seconds of timing per candidate at batch 1.  [default: 1.5]")
@click.option("--no-progress", "no_progress", is_flag=True, help="No progress bars.")
def export_command(profile, keep_fp, no_progress, **options):
    """Export a checkpoint to ONNX FP32 (+ FP16 / INT8 Q/DQ, OpenVINO IR), measure accuracy drift, build a TensorRT engine.

    Writes model.onnx, model.fp16.onnx, model.int8.onnx, drift_report.{json,md}, drift.png and
    export.json into --out, plus model.<precision>.plan(.json) when TensorRT and a GPU are present,
    and model.xml / model.int8.xml (+ .bin) for --target openvino and cpu-best.
    Exits non-zero when an artifact drops more than --max-drift (the files are kept); for
    --target cpu-best only when no candidate passes.
    """
    from corese_edge.export.pipeline import make_export_config, run_export

    cfg = make_export_config(
        profile=profile,
        keep_fp=tuple(keep_fp) or None,
        progress=False if no_progress else None,
        **options,
    )
    run_export(cfg, echo=click.echo)


@click.command("build-engine", epilog=BUILD_ENGINE_EPILOG)
@click.argument("onnx_model", metavar="MODEL.onnx", type=click.Path())
@click.option("--out", type=click.Path(), default=ENGINE["out"],
              help="Plan file; its sidecar is PLAN.json.  [default: model.<precision>.plan beside the ONNX]")
@click.option("--min-batch", type=int, default=ENGINE["min_batch"], show_default=True, help="Smallest batch the plan accepts.")
@click.option("--opt-batch", type=int, default=ENGINE["opt_batch"], show_default=True, help="Batch TensorRT tunes its kernels for.")
@click.option("--max-batch", type=int, default=ENGINE["max_batch"], show_default=True, help="Largest batch the plan accepts.")
@click.option("--workspace-gb", type=float, default=ENGINE["workspace_gb"], show_default=True, help="Builder workspace memory pool.")
@click.option("--timing-cache", type=click.Path(), default=ENGINE["timing_cache"],
              help="Reuse and update this timing cache file (one from another GPU or TensorRT version is replaced).")
@click.option("--hardware-compat", type=click.Choice(list(HARDWARE_COMPAT)), default=ENGINE["hardware_compat"],
              show_default=True, help="ampere+: one plan for Ampere-and-newer discrete GPUs (slower; refused on Jetsons).")
@click.option("--version-compatible", is_flag=True, default=ENGINE["version_compatible"],
              help="Embed the lean runtime so later TensorRT versions load the plan.")
def build_engine_command(onnx_model, **options):
    """Build a TensorRT plan (and its .plan.json sidecar) from a corese-edge ONNX, on this device.

    The precision comes from the ONNX (FP32, FP16, or INT8 Q/DQ); one optimization profile covers
    --min-batch <= --opt-batch <= --max-batch.  The plan and its sidecar are written together or
    not at all.
    """
    from corese_edge.export.tensorrt import EngineConfig, run_build_engine

    built = run_build_engine(EngineConfig(onnx=onnx_model, **options))
    click.echo(f"wrote {built.plan} ({built.info['precision']}, TensorRT {built.info['trt_version']}, "
               f"{built.info['gpu_name']}) and {built.sidecar}")
