"""The ``corese-edge`` command line: a thin click layer over the library.

Each command builds one typed config and calls one library function.  Commands live in small
modules that are imported only when used, so ``corese-edge --help`` and the runtime commands never
import torch.  A :class:`~corese_edge.errors.UserError` is printed as one line (exit status 2).
"""
from __future__ import annotations

import importlib
import logging
import os
import sys

# FFmpeg (inside OpenCV's video I/O) prints decoder and network chatter such as "[mjpeg @ 0x...]
# overread 8" or "Connection refused" straight to stderr; the command line reports problems in
# its own single line instead.  OpenCV reads this once, when cv2 is first imported, which no
# command does before this module; a value the user set is kept.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL

import click

from corese_edge import __version__
from corese_edge.errors import UserError

#: command name -> "module:attribute"
COMMANDS = {
    "demo": "corese_edge.cli.train:demo_command",
    "train": "corese_edge.cli.train:train_command",
    "evaluate": "corese_edge.cli.train:evaluate_command",
    "import-seed": "corese_edge.cli.train:import_seed_command",
    "export": "corese_edge.cli.export:export_command",
    "build-engine": "corese_edge.cli.export:build_engine_command",
    "bench": "corese_edge.cli.runtime:bench_command",
    "predict": "corese_edge.cli.runtime:predict_command",
    "env": "corese_edge.cli.runtime:env_command",
    "inspect": "corese_edge.cli.inspect:inspect_command",
    "faces": "corese_edge.cli.faces:faces_group",
    "package": "corese_edge.cli.serve:package_command",
    "serve": "corese_edge.cli.serve:serve_command",
}


#: top-level module -> the pip extra that installs it
EXTRA_OF = {
    "torch": "train", "torchvision": "train", "timm": "train", "albumentations": "train", "matplotlib": "train",
    "onnx": "export", "onnxruntime": "export", "onnxconverter_common": "export",
    "cuda": "trt", "modelopt": "modelopt", "openvino": "openvino", "nncf": "openvino",
}


class UserFacingError(click.ClickException):
    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise UserFacingError(str(exc)) from None
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if top == "tensorrt":
                raise UserFacingError("TensorRT is not installed: JetPack's python3-libnvinfer on a Jetson, "
                                      "NVIDIA's tensorrt wheel on a desktop") from None
            if top not in EXTRA_OF:
                raise
            extra = "train,export" if ctx.invoked_subcommand in ("export", "demo") else EXTRA_OF[top]
            raise UserFacingError(f"{top} is not installed, and '{ctx.invoked_subcommand}' needs it: "
                                  f"pip install 'corese-edge[{extra}]'") from None
        except KeyboardInterrupt:
            click.echo("interrupted; completed artifacts are kept", err=True)
            sys.exit(130)


EPILOG = """\b
Examples:
  corese-edge demo                                   # synthetic data: train, export, bench
  corese-edge train --data ~/data/RAF-DB --epochs 50 --out runs/rafdb
  corese-edge export --int8 --fp16                   # newest run's swa_final.pt
  corese-edge bench --engine export/model.int8.plan --batch 1,8,32
  corese-edge predict face.jpg --model export/model.int8.onnx
"""


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="corese-edge")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """CoRes-SE facial-expression recognition: train, export to ONNX/TensorRT, validate, benchmark."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("PIL", "matplotlib", "urllib3", "httpx", "timm"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="corese-edge")
