"""CLI: ``package ARTIFACT --triton DIR`` / ``--deepstream DIR`` (a thin layer over corese_edge.serve).

Never imports torch: the repository is written from the artifact's own metadata.
"""
from __future__ import annotations

import click

from corese_edge.errors import UserError

PACKAGE_EPILOG = """\b
Examples:
  corese-edge package export/model.int8.onnx --triton models        # coresse (ONNX Runtime) + coresse_faces
  corese-edge package export/model.int8.plan --triton models --max-batch 16
  corese-edge package export/model.int8.xml --triton models --no-faces
  corese-edge package export/model.int8.onnx --triton models --backend python   # corese-edge's runner in Triton
  corese-edge package export/model.int8.onnx --deepstream ds --operate-on-class-ids 0
\b
Then: tritonserver --model-repository models   (NVIDIA's tritonserver container, or Triton's
Jetson release tarball); coresse takes 'frames' uint8 [N, S, S, 3] and returns 'probabilities'.
"""


@click.command("package", epilog=PACKAGE_EPILOG)
@click.argument("artifact", type=click.Path())
@click.option("--triton", "triton_dir", type=click.Path(file_okay=False), help="Write a Triton model repository here.")
@click.option("--deepstream", "deepstream_dir", type=click.Path(file_okay=False),
              help="Write DeepStream nvinfer files here (ARTIFACT must be an .onnx).")
@click.option("--backend", type=click.Choice(["native", "python"]), default="native", show_default=True,
              help="Triton: the artifact's native backend, or a Python-backend model running corese-edge's runner.")
@click.option("--max-batch", type=click.IntRange(min=1), default=None,
              help="Triton max_batch_size.  [default: a plan's profile maximum, else build-engine's default]")
@click.option("--max-queue-delay-us", type=click.IntRange(min=0), default=500, show_default=True,
              help="Triton dynamic batcher: how long a request may wait for others.")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True, help="Triton instance_group count.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads per coresse instance (Python backend's runner; ONNX Runtime backend's intra_op_thread_count).  [default: the backend's]")
@click.option("--faces/--no-faces", default=True, show_default=True,
              help="Triton: also write coresse_faces (YuNet + alignment + a BLS request to coresse).")
@click.option("--face-model", type=click.Path(), default=None, help="YuNet .onnx to copy.  [default: as predict --faces finds it]")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="DeepStream: nvinfer batch-size.")
@click.option("--gie-unique-id", type=click.IntRange(min=1), default=2, show_default=True, help="DeepStream: this classifier's id.")
@click.option("--operate-on-gie-id", type=click.IntRange(min=1), default=1, show_default=True,
              help="DeepStream: the face detector's gie-unique-id.")
@click.option("--operate-on-class-ids", default=None, help="DeepStream: the detector's face class id(s), e.g. 0 or 0;2.  [default: all]")
@click.option("--classifier-threshold", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="DeepStream: lowest probability nvinfer attaches as a label.")
def package_command(artifact, triton_dir, deepstream_dir, backend, max_batch, max_queue_delay_us, instances, threads, faces,
                    face_model, batch_size, gie_unique_id, operate_on_gie_id, operate_on_class_ids, classifier_threshold):
    """Package an exported artifact for serving: a Triton model repository (--triton) and/or
    DeepStream nvinfer files (--deepstream)."""
    if not triton_dir and not deepstream_dir:
        raise UserError("package needs --triton DIR and/or --deepstream DIR")
    if triton_dir:
        from corese_edge.serve.triton import package_triton

        repo = package_triton(artifact, triton_dir, backend=backend, max_batch=max_batch,
                              max_queue_delay_us=max_queue_delay_us, instances=instances, threads=threads, faces=faces,
                              face_model=face_model)
        for note in repo.notes:
            click.echo(note, err=True)
        t = repo.tensors
        click.echo(f"wrote Triton repository {repo.root}: {', '.join(repo.models)} "
                   f"({t.input_name} -> {t.output_name}, max_batch_size {repo.max_batch}, warmup at {repo.opt_batch}, "
                   f"{repo.backend} backend)")
    if deepstream_dir:
        from corese_edge.serve.deepstream import package_deepstream

        ds = package_deepstream(artifact, deepstream_dir, batch_size=batch_size, gie_id=gie_unique_id,
                                operate_on_gie_id=operate_on_gie_id, operate_on_class_ids=operate_on_class_ids,
                                threshold=classifier_threshold)
        for note in ds.notes:
            click.echo(note, err=True)
        click.echo(f"wrote DeepStream files {ds.folder}: {ds.model.name}, {ds.labels.name}, {ds.config.name}")


SERVE_EPILOG = """\b
Examples:
  corese-edge serve export/model.int8.onnx                      # loopback, ports 8000/8001/8002
  corese-edge serve export/model.int8.onnx --max-batch 16 --max-queue-delay-us 1000 --instances 2
  corese-edge serve export/model.int8.plan --tritonserver /opt/tritonserver/bin/tritonserver
  corese-edge serve export/model.int8.xml --host 0.0.0.0 --no-faces   # every interface: only when asked
\b
Which server: --tritonserver PATH, else tritonserver on PATH (native backends), else the server
bundled with nvidia-pytriton (pip install 'corese-edge[serve]'; Python backend only, so coresse runs
corese-edge's own runner).  Clients: tritonclient (HTTP, gRPC), curl with KServe v2 JSON, or
corese_edge.client.ExpressionClient.
"""


@click.command("serve", epilog=SERVE_EPILOG)
@click.argument("artifact", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address Triton listens on (HTTP, gRPC and metrics).  Loopback unless you say otherwise.")
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--metrics-port", type=int, default=8002, show_default=True)
@click.option("--backend", type=click.Choice(["auto", "native", "python"]), default="auto", show_default=True,
              help="coresse's backend; auto: native with a full tritonserver, python with the bundled one.")
@click.option("--max-batch", type=click.IntRange(min=1), default=None,
              help="Triton max_batch_size.  [default: a plan's profile maximum, else build-engine's default]")
@click.option("--max-queue-delay-us", type=click.IntRange(min=0), default=500, show_default=True,
              help="Dynamic batcher: how long a request may wait for others.")
@click.option("--instances", type=click.IntRange(min=1), default=None,
              help="coresse instances (instance_group count).  [default: 2 for a CPU model on the Python backend, else 1]")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads per coresse instance.  [default: the cores shared among the instances, Python backend; else the backend's]")
@click.option("--faces/--no-faces", default=True, show_default=True,
              help="Also serve coresse_faces (YuNet + alignment + coresse), found as predict --faces finds it.")
@click.option("--face-model", type=click.Path(), default=None, help="YuNet .onnx.  [default: as predict --faces finds it]")
@click.option("--tritonserver", "tritonserver", type=click.Path(), default=None,
              help="The tritonserver binary.  [default: tritonserver on PATH, else nvidia-pytriton's]")
@click.option("--repository", type=click.Path(file_okay=False), default=None,
              help="Write (and keep) the model repository here.  [default: a temporary folder]")
@click.option("--exit-timeout", "exit_timeout_s", type=click.IntRange(min=0), default=30, show_default=True,
              help="Seconds to answer requests in flight after SIGINT / SIGTERM.")
@click.option("--log-verbose", type=click.IntRange(min=0), default=0, show_default=True, help="tritonserver's --log-verbose.")
def serve_command(artifact, host, http_port, grpc_port, metrics_port, backend, max_batch, max_queue_delay_us, instances,
                  threads, faces, face_model, tritonserver, repository, exit_timeout_s, log_verbose):
    """Serve an exported artifact on NVIDIA Triton Inference Server (coresse, and coresse_faces),
    with dynamic batching, until Ctrl-C or SIGTERM."""
    import sys

    from corese_edge.serve.server import ServeOptions, serve

    options = ServeOptions(host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, backend=backend,
                           max_batch=max_batch, max_queue_delay_us=max_queue_delay_us, instances=instances, threads=threads, faces=faces,
                           face_model=face_model, tritonserver=tritonserver, repository=repository,
                           exit_timeout_s=exit_timeout_s, log_verbose=log_verbose)
    code = serve(artifact, options, echo=lambda line: click.echo(line, err=line.startswith("coresse:")))
    sys.exit(code)
