"""CLI: ``corese-edge faces ...``, the face template of a checkpoint."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from corese_edge.errors import CheckpointError, UserError

CHOICE_LAYOUTS = ["auto", "rafdb-basic", "rafdb-kaggle", "affectnet-kaggle", "affectnet-official", "folder"]


@click.group("faces", epilog="""\b
Examples:
  corese-edge faces template --checkpoint runs/rafdb/swa_final.pt           # -> runs/rafdb/swa_final.template.pt
  corese-edge faces template --checkpoint model.pt --data ~/data/RAF-DB --images 500
""")
def faces_group() -> None:
    """Face alignment: the template that aligned faces are warped to."""


@faces_group.command("template", epilog="""\b
Examples:
  corese-edge faces template --checkpoint runs/rafdb/swa_final.pt             # the recorded dataset
  corese-edge faces template --data ~/data/RAF-DB --checkpoint seed.pt --out seed.rafdb.pt
  corese-edge faces template --checkpoint model.pt --images 1000 --face-model yunet.onnx
""")
@click.option("--checkpoint", required=True, type=click.Path(), help="A corese-edge checkpoint (never modified).")
@click.option("--data", type=click.Path(), help="Dataset folder.  [default: the one recorded in the checkpoint]")
@click.option("--dataset", type=click.Choice(CHOICE_LAYOUTS), help="Force a layout.  [default: recorded or detected]")
@click.option("--out", type=click.Path(), help="The copy to write.  [default: <checkpoint stem>.template.pt beside it]")
@click.option("--face-model", type=click.Path(), help="YuNet .onnx.  [default: $CORESE_EDGE_FACE_MODEL, cache or download]")
@click.option("--images", type=click.IntRange(min=1),
              help="Training images sampled, seeded with the run's seed.  [default: the run's sample size, else 300]")
@click.option("--no-progress", "no_progress", is_flag=True, help="No progress bar.")
def template_command(checkpoint, data, dataset, out, face_model, images, no_progress):
    """Recompute the face template of a checkpoint from its training images and write it into a copy.

    The template is the median position of the eyes and the mouth centre over a sample of the
    train split (YuNet landmarks, in the model's input geometry).  If faces are found on fewer
    than half of the images, the copy gets the documented default template, and the reason is
    printed.  The input checkpoint is left untouched.
    """
    from corese_edge.data.face_template import POINTS, describe_template, learn_face_template
    from corese_edge.data.layouts import load_index
    from corese_edge.model.checkpoint import load_checkpoint
    from corese_edge.runtime.faces import FaceDetector

    src = Path(checkpoint)
    dst = Path(out) if out else src.with_name(f"{src.stem}.template.pt")
    ckpt = load_checkpoint(src)
    if dst.exists() and dst.resolve() == src.resolve():
        raise UserError(f"--out {dst} is the input checkpoint; the template goes into a copy, choose another --out")
    if dst.is_dir():
        raise UserError(f"--out {dst} is a folder; give the copy's file name")
    root = data or (ckpt.dataset or {}).get("root")
    if not root:
        raise CheckpointError(f"{src} records no dataset; pass --data DIR")
    # the recorded layout describes the recorded folder only; an explicit --data is detected
    layout = dataset or (None if data else (ckpt.dataset or {}).get("layout")) or "auto"
    train = load_index(root, layout).split("train")
    detector = FaceDetector(face_model)
    # the run's own sample size and seed, so the same data gives the template training computed
    sample = images or int(ckpt.config.get("face_template_images") or 300)
    template, stats = learn_face_template(
        [s.path for s in train], detector, sample=sample, seed=int(ckpt.config.get("seed", 0)),
        progress=not no_progress, size=ckpt.preprocessing.size,
    )
    stats["data"] = str(root)
    old = ckpt.preprocessing.face_template
    ckpt.preprocessing = replace(ckpt.preprocessing, face_template=template)
    ckpt.dataset = {**(ckpt.dataset or {}), "face_template": stats}
    ckpt.save(dst)  # atomic (temporary file + rename); the input is only read

    click.echo(describe_template(template, stats))
    click.echo(f"images: {stats['images']} tried of {stats['available']} in the train split of {root}, "
               f"faces found on {stats['found']}" + (f", {stats['unreadable']} unreadable" if stats["unreadable"] else ""))
    if stats["spread"]:
        click.echo("spread (interquartile range, fraction of the input side): " + ", ".join(
            f"{n.replace('_', ' ')} {x:.3f} x {y:.3f}" for n, (x, y) in ((n, stats["spread"][n]) for n in POINTS)))
    click.echo(f"previous template: {old.source}" + (f" ({old.images} images)" if old.source == "learned" else ""))
    click.echo(f"wrote {dst}")
