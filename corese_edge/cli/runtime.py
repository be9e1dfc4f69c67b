"""CLI: predict, env, bench (thin layers over corese_edge.runtime, .env_report and .bench)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from corese_edge.errors import UserError

CUDA_BACKENDS = ["auto", "cuda-python", "pycuda"]


@click.command("predict", epilog="""\b
Examples:
  corese-edge predict face.jpg --model export/model.onnx
  corese-edge predict photos/ --model export/model.int8.plan --faces --json > preds.json
  corese-edge predict clip.mp4 --model export/model.fp16.plan --faces --every 5
  corese-edge predict clip.mp4 --model model.int8.onnx --faces --save out.mp4 --timeline t.png
  corese-edge predict 0 --model model.int8.xml --faces --show                 # webcam 0, a window
  corese-edge predict rtsp://cam.local/stream --model model.int8.plan --faces --save cam.mp4
  corese-edge predict photo.jpg --model model.onnx --faces --face-model yunet.onnx --no-align
  corese-edge predict a.jpg b.png --model runs/rafdb/checkpoints/swa_final.pt
""")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--model", "-m", "model", required=True, type=click.Path(), help="A .plan/.engine (TensorRT), .onnx (ONNX Runtime) or .pt (PyTorch) artifact.")
@click.option("--faces/--no-faces", default=False, help="Detect every face (YuNet) and classify each, aligned to the model's face template.  [default: no-faces]")
@click.option("--align/--no-align", default=True, help="--faces: align eyes and mouth to the template (similarity warp); --no-align takes the plain box crop.  [default: align]")
@click.option("--face-model", type=click.Path(), help="--faces: the YuNet face_detection_yunet_2023mar.onnx file.  [default: $CORESE_EDGE_FACE_MODEL, the user cache, else downloaded once]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--providers", help="ONNX Runtime providers, comma-separated (cpu, cuda, tensorrt).  [default: cuda if available, then cpu]")
@click.option("--threads", type=int, help="ONNX Runtime / torch CPU threads.")
@click.option("--cuda-backend", type=click.Choice(CUDA_BACKENDS), default="auto", show_default=True, help="CUDA layer of the TensorRT runner.")
@click.option("--batch-size", type=int, help="Images per inference call (capped at the engine's maximum batch).")
@click.option("--every", type=int, default=1, show_default=True, help="Video: classify every N-th frame.")
@click.option("--smoothing", type=float, default=0.6, show_default=True, help="Video: EMA momentum of the probabilities (0 = none).")
@click.option("--save", type=click.Path(dir_okay=False), help="Video: write the frames annotated (boxes, labels, probabilities) to this .mp4/.avi, at the source's size and fps.")
@click.option("--show", is_flag=True, help="Video: show the annotated frames in a window (q or Esc stops).")
@click.option("--timeline", type=click.Path(dir_okay=False), help="Video: plot each face track's probabilities over time to this .png, numbers beside it as .json.")
@click.option("--landmarks", is_flag=True, help="--save/--show: also draw the 5 face landmarks.")
@click.option("--reconnects", type=click.IntRange(min=0), default=3, show_default=True, help="Stream: reopen a dropped stream this many times before giving up.")
def predict_command(inputs, model, faces, align, face_model, as_json, providers, threads, cuda_backend, batch_size, every,
                    smoothing, save, show, timeline, landmarks, reconnects) -> None:
    """Classify the facial expression in images, folders of images, a video file, a camera
    (an index such as 0) or a network stream (rtsp://, http://, https://).

    With --faces, each face found gets its own row (largest first), with its box and 5 landmarks
    in the image's pixels; images with no face get none and are counted on stderr (JSON: "no_face").
    Videos can also be saved annotated (--save), shown (--show) and summed up as a timeline
    (--timeline); a progress bar on stderr shows frames per second.
    """
    from corese_edge.runtime.classifier import ExpressionClassifier
    from corese_edge.runtime.inputs import VideoOutputs, collect_inputs, predict_inputs

    items = collect_inputs(inputs)
    if not faces and (face_model or not align):
        raise UserError("--face-model and --no-align apply to face detection: add --faces")
    if landmarks and not (save or show):
        raise UserError("--landmarks draws on the annotated frames: add --save or --show")
    outputs = VideoOutputs(save=save, show=show, timeline=timeline, landmarks=landmarks, reconnects=reconnects)
    if save or show or timeline:
        outputs.check(items)
    no_face: list[dict] = []
    with ExpressionClassifier.from_artifact(
        model, faces=faces, align=align, face_model=face_model, batch_size=batch_size, providers=providers,
        threads=threads, cuda_backend=cuda_backend,
    ) as clf:
        rows = list(predict_inputs(clf, items, every=every, momentum=smoothing, no_face=no_face, outputs=outputs))
    for line in outputs.ended:
        click.echo(line, err=True)
    for path in (save, timeline):
        if path:
            click.echo(f"wrote {path}" + (f" and {Path(path).with_suffix('.json')}" if path == timeline else ""),
                       err=True)
    if as_json:
        doc = {
            "schema": "corese-edge/predictions/1",
            "model": str(model),
            "class_names": list(clf.class_names),
            "faces": faces,
            "align": align if faces else None,
            "face_template": clf.preprocessing.face_template.to_dict() if faces else None,
            "predictions": rows,
            "no_face": no_face,
        }
        click.echo(json.dumps(doc, indent=2))
        _report_no_face(no_face, items)
        return
    if not rows:
        _report_no_face(no_face, items)
        return
    width = max(len(r["input"]) for r in rows) if rows else 10
    click.echo(f"{'input':{width}}  {'frame':>6}  {'label':12} {'conf':>6}  box")
    for r in rows:
        frame = "" if r["frame"] is None else str(r["frame"])
        box = "" if r["box"] is None else ",".join(str(round(v)) for v in r["box"])
        click.echo(f"{r['input']:{width}}  {frame:>6}  {r['label']:12} {r['confidence']:>6.3f}  {box}")
    _report_no_face(no_face, items)


def _report_no_face(no_face: list[dict], items: list) -> None:
    """One stderr line naming the images (and video frames) in which no face was found."""
    if not no_face:
        return
    images = [r["input"] for r in no_face if r["frame"] is None]
    frames = [r for r in no_face if r["frame"] is not None]
    n_images = sum(1 for it in items if it.kind == "image")
    parts = []
    if images:
        if n_images == 1:
            parts.append(f"no face found in {images[0]}")
        else:
            shown = ", ".join(images[:3]) + (", ..." if len(images) > 3 else "")
            parts.append(f"no face found in {len(images)} of {n_images} images ({shown})")
    if frames:
        parts.append(f"no face found in {len(frames)} video frame{'s' if len(frames) != 1 else ''}")
    click.echo("; ".join(parts), err=True)


@click.command("env", epilog="""\b
Examples:
  corese-edge env
  corese-edge env --json > env.json
""")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def env_command(as_json: bool) -> None:
    """Versions (Python, torch, ONNX Runtime, TensorRT, CUDA, GPU, JetPack) and what can run here.

    Names the NVIDIA driver's CUDA version and the extra whose cuda-python fits it: trt-cu12 for
    drivers older than 580 (JetPack 6.x), trt-cu13 for 580 and newer (JetPack 7).
    """
    from corese_edge.env_report import collect_env, format_env

    report = collect_env()
    click.echo(json.dumps(report, indent=2, default=str) if as_json else format_env(report))


@click.command("bench", epilog="""\b
Examples:
  corese-edge bench --model export/model.int8.plan --batch 1,8,32
  corese-edge bench --model export/model.int8.xml --threads 2 --json b.json      # OpenVINO, CPU
  corese-edge bench --model export/model.xml --inference-precision f32          # OpenVINO, FP32 forced
  corese-edge bench --model model.fp16.plan --cuda-graph --no-transfers --json b.json
  corese-edge bench --model export/model.onnx --providers cpu --threads 2 --duration-s 2
  corese-edge bench --model runs/rafdb/checkpoints/swa_final.pt --iterations 20
  corese-edge bench --model model.int8.onnx --end-to-end      # + preprocessing of uint8 frames
  corese-edge bench --compare export/                         # every artifact + drift report
  corese-edge bench --suite                                   # benchmarks/ matrix -> RESULTS.md
\b
--engine, --onnx and --checkpoint are --model restricted to one format.
""")
@click.option("--model", "-m", "model", type=click.Path(), help="Any artifact, run by the backend its suffix names: .plan/.engine (TensorRT), .onnx (ONNX Runtime), .xml (OpenVINO IR), .pt (PyTorch).")
@click.option("--engine", type=click.Path(), help="A TensorRT .plan (with its .plan.json sidecar).")
@click.option("--onnx", "onnx_path", type=click.Path(), help="An ONNX model, run with ONNX Runtime.")
@click.option("--checkpoint", type=click.Path(), help="A corese-edge .pt checkpoint, run with PyTorch eager (reference).")
@click.option("--compare", "compare_dir", type=click.Path(), help="Benchmark every artifact of an export folder in one table.")
@click.option("--suite", is_flag=True, help="Run the benchmarks/ suite (coresse and coresse-lite, backends x precisions x batches).")
@click.option("--providers", help="ONNX Runtime providers, comma-separated (cpu, cuda, tensorrt).")
@click.option("--threads", type=int, help="ONNX Runtime intra-op / OpenVINO CPU / torch threads.  [default: the library's]")
@click.option("--device", default=None, help=".pt: cpu or cuda[:N]; .plan: GPU index; .xml: OpenVINO device (CPU, GPU, GPU.1, NPU, AUTO).  [default: cpu / 0 / CPU]")
@click.option("--streams", help="OpenVINO: NUM_STREAMS, an integer or auto.  [default: the hint's]")
@click.option("--hint", type=click.Choice(["latency", "throughput", "cumulative_throughput"]), help="OpenVINO performance hint.  [default: latency]")
@click.option("--inference-precision", type=click.Choice(["f32", "bf16", "f16"]), help="OpenVINO: force the float precision.  [default: the device's: bf16 with AMX / AVX-512-BF16, else f32]")
@click.option("--fp16", "half", is_flag=True, help="--checkpoint on CUDA: run the model in FP16.")
@click.option("--batch", "batch", help="Batch sizes, comma-separated, e.g. 1,8,32.  [default: 1; 1,8 with --suite]")
@click.option("--warmup-ms", type=float, default=200.0, show_default=True, help="Warm-up time before timing.")
@click.option("--duration-s", type=float, help="Minimum timed duration per batch.  [default: 3; 1 with --suite]")
@click.option("--iterations", type=int, help="Time exactly N queries instead of a duration.")
@click.option("--cuda-graph/--no-cuda-graph", default=False, show_default=True, help="TensorRT: replay the enqueue as a CUDA graph.")
@click.option("--include-transfers/--no-transfers", default=True, show_default=True, help="TensorRT: time H2D and D2H copies (trtexec --noDataTransfers to exclude).")
@click.option("--end-to-end", is_flag=True, help="Also time preprocessing of 100x100 uint8 frames plus inference.")
@click.option("--cuda-backend", type=click.Choice(CUDA_BACKENDS), default="auto", show_default=True, help="CUDA layer of the TensorRT runner.")
@click.option("--json", "json_path", type=click.Path(), help="Write the report as JSON (schema corese-edge/bench/1).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="--suite: folder for results/<machine>.json and RESULTS.md.  [default: ./benchmarks]")
def bench_command(model, engine, onnx_path, checkpoint, compare_dir, suite, providers, threads, device, streams, hint,
                  inference_precision, half, batch, warmup_ms, duration_s, iterations, cuda_graph, include_transfers,
                  end_to_end, cuda_backend, json_path, out_dir) -> None:
    """Benchmark a model the way trtexec measures: latency, throughput, GPU compute, H2D/D2H, enqueue."""
    from corese_edge.bench.timing import parse_batches
    from corese_edge.timing import BenchSettings

    chosen = [name for name, v in (("--model", model), ("--engine", engine), ("--onnx", onnx_path), ("--checkpoint", checkpoint),
                                   ("--compare", compare_dir), ("--suite", suite)) if v]
    if len(chosen) != 1:
        raise UserError("give exactly one of --model, --engine, --onnx, --checkpoint, --compare or --suite"
                        + (f" (got {', '.join(chosen)})" if chosen else ""))
    if iterations is not None and duration_s is not None:
        raise UserError("--duration-s and --iterations exclude each other")
    if streams is not None:
        streams = streams.strip().lower()
        if streams != "auto":
            if not streams.isdigit() or int(streams) < 1:
                raise UserError(f"--streams takes an integer >= 1 or auto, got {streams!r}")
            streams = int(streams)
    if out_dir and not suite:
        raise UserError("--out names the --suite results folder; a single benchmark writes its report with --json")
    if suite:
        from corese_edge.bench.suite import DEFAULT_OUT, SuiteConfig, output_paths, run_suite

        results_dir, markdown = output_paths(out_dir or DEFAULT_OUT)
        cfg = SuiteConfig(
            batches=parse_batches(batch) if batch else SuiteConfig.batches,
            warmup_ms=warmup_ms, duration_s=duration_s if duration_s is not None else SuiteConfig.duration_s,
            threads=threads, results_dir=str(results_dir), markdown=str(markdown),
        )
        run_suite(cfg, progress=lambda m: click.echo(m, err=True))
        return

    settings = BenchSettings(
        batches=parse_batches(batch or "1"), warmup_ms=warmup_ms, duration_s=duration_s if duration_s is not None else 3.0,
        iterations=iterations, cuda_graph=cuda_graph, include_transfers=include_transfers, end_to_end=end_to_end,
    )
    runner_options = {"providers": providers, "threads": threads, "cuda_backend": cuda_backend, "cuda_graph": cuda_graph,
                      "device": device, "half": half or None, "streams": streams, "hint": hint,
                      "inference_precision": inference_precision}

    if compare_dir:
        from corese_edge.bench.compare import format_compare, run_compare

        doc, out, plot = run_compare(compare_dir, settings, runner_options, json_path)
        click.echo(format_compare(doc))
        if plot:
            click.echo(f"plot: {plot}", err=True)
        click.echo(f"json: {out}", err=True)
        return

    from corese_edge.bench.machine import describe
    from corese_edge.bench.timing import format_results, run_benchmarks
    from corese_edge.machine import format_isa
    from corese_edge.runtime.artifacts import open_runner

    path = model or engine or onnx_path or checkpoint
    for flag, value, suffixes in (("--engine", engine, (".plan", ".engine")), ("--onnx", onnx_path, (".onnx",)),
                                  ("--checkpoint", checkpoint, (".pt", ".pth"))):
        if value and Path(value).suffix.lower() not in suffixes:
            raise UserError(f"{flag} takes a {' or '.join(suffixes)} file, got {value}")
    runner = open_runner(path, **runner_options)  # an unknown suffix: one line naming the known ones
    try:
        doc = run_benchmarks(runner, settings)
    finally:
        runner.close()
    click.echo(f"machine: {describe(doc['device'])}")
    click.echo(f"cpu flags: {format_isa(doc['device']['host'].get('cpu_isa') or {})}")
    # what the runner reported about its own execution (Runner.execution_facts), read from the report
    first = doc["results"][0] if doc["results"] else {}
    click.echo(f"settings: warm-up {settings.warmup_ms} ms, "
               + (f"{settings.iterations} iterations" if settings.iterations else f">= {settings.duration_s} s and >= {settings.min_iterations} iterations")
               + (f", CUDA graph {'on' if first['cuda_graph'] else 'off'}, transfers {'included' if first.get('include_transfers') else 'excluded'}" if "cuda_graph" in first else "")
               + (", end-to-end" if settings.end_to_end else ""))
    execution = first.get("execution")
    if execution:
        click.echo(f"openvino: device {execution.get('device')}, inference precision {execution.get('inference_precision')}, "
                   f"{execution.get('num_streams')} stream(s), {execution.get('threads')} thread(s), hint {execution.get('hint')}")
    click.echo(format_results(doc))
    if json_path:
        from corese_edge.bench.report import write_report

        write_report(json_path, doc)
        click.echo(f"json: {json_path}", err=True)
