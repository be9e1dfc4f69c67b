"""CLI: demo, train, evaluate, import-seed (thin layers over corese_edge.train / .model / .demo)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from corese_edge.errors import UserError

CHOICE_LAYOUTS = ["auto", "rafdb-basic", "rafdb-kaggle", "affectnet-kaggle", "affectnet-official", "folder"]


@click.command("train", epilog="""\b
Examples:
  corese-edge train --data ~/data/RAF-DB --out runs/rafdb
  corese-edge train --data ~/data/AffectNet --epochs 30 --amp bf16 --channels-last
  corese-edge train --data faces/ --model coresse-lite --img-size 112 --pretrained none
  corese-edge train --out runs/rafdb --resume            # continue after an interruption
  corese-edge train --config train.yaml --nproc 2        # DDP (same as torchrun -m corese_edge train)
  torchrun --nproc_per_node 4 -m corese_edge train --data ~/data/RAF-DB
""")
@click.option("--data", type=click.Path(), help="Dataset folder (RAF-DB basic/Kaggle, AffectNet Kaggle/official, or class folders).")
@click.option("--dataset", type=click.Choice(CHOICE_LAYOUTS), help="Force a layout instead of detecting it.  [default: auto]")
@click.option("--model", help="Variant: coresse (ResNet-50 + ConvNeXt-T), coresse-lite (ResNet-18 + ConvNeXt-Atto) or coresse-test (tiny, for tests/CI).  [default: coresse]")
@click.option("--img-size", type=int, help="Square input size.  [default: 224]")
@click.option("--epochs", type=int, help="[default: 50]")
@click.option("--batch-size", type=int, help="Images per step per process; even (Mixup pairs).  [default: 32]")
@click.option("--eval-batch-size", type=int, help="[default: 64]")
@click.option("--lr", type=float, help="Peak AdamW learning rate.  [default: 3e-4]")
@click.option("--min-lr", type=float, help="Cosine floor.  [default: 1e-6]")
@click.option("--weight-decay", type=float, help="[default: 0.05]")
@click.option("--mixup", type=float, help="Mixup alpha (0 disables).  [default: 0.2]")
@click.option("--cutmix", type=float, help="CutMix alpha (0 disables).  [default: 0.2]")
@click.option("--label-smoothing", type=float, help="[default: 0.1]")
@click.option("--swa-start", type=float, help="Fraction of the epochs after which SWA averages.  [default: 0.75]")
@click.option("--se-mode", type=click.Choice(["sample", "batch"]), help="SE gate per sample (batch-independent) or seed-exact batch mean.  [default: sample]")
@click.option("--pretrained", help="imagenet | none | PATH to a state dict.  [default: imagenet]")
@click.option("--init-from", type=click.Path(), help="Fine-tune from a corese-edge checkpoint (head re-initialised if the class count differs).")
@click.option("--warmup-epochs", type=int, help="Linear warm-up, capped at epochs-1.  [default: 3]")
@click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]), help="auto = bf16 on CUDA, off on CPU.  [default: auto]")
@click.option("--channels-last/--no-channels-last", default=None, help="NHWC memory format (faster with AMP on GPUs).")
@click.option("--workers", type=int, help="DataLoader worker processes (started from a forkserver, kept for the run).  [default: 2]")
@click.option("--cache", type=click.Choice(["auto", "on", "off"]), help="Decode train/val images once into memory at --img-size (auto: up to 1 GiB).  [default: auto]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="[default: auto]")
@click.option("--seed", type=int, help="[default: 0]")
@click.option("--out", type=click.Path(), help="Run folder.  [default: runs/<model>-<time>]")
@click.option("--resume", is_flag=True, default=None, help="Continue the run in --out from checkpoints/last.pt, exactly.")
@click.option("--val-fraction", type=float, help="Stratified validation split carved from train.  [default: 0.1]")
@click.option("--select-metric", type=click.Choice(["accuracy", "mean_class_accuracy"]), help="Picks best.pt on validation.  [default: accuracy]")
@click.option("--balance", type=click.Choice(["none", "sampler", "loss"]), help="Class-imbalance handling.  [default: none]")
@click.option("--skip-bad-images", is_flag=True, default=None, help="Skip unreadable images (and report how many) instead of stopping.")
@click.option("--face-model", type=click.Path(), help="YuNet .onnx for the face template.  [default: $CORESE_EDGE_FACE_MODEL, cache or download]")
@click.option("--face-template-images", type=int, help="Training images sampled to learn the face template (0: use the default).  [default: 300]")
@click.option("--no-progress", "no_progress", is_flag=True, help="No progress bars.")
@click.option("--config", "config_file", type=click.Path(), help="YAML file of the options above (command-line options win).")
@click.option("--nproc", type=int, default=1, show_default=True, help="Processes for DDP on this machine (launches torchrun).")
def train_command(config_file, nproc, no_progress, **options):
    """Train CoRes-SE with the seed recipe (Mixup/CutMix, cosine, SWA) on RAF-DB, AffectNet or a class-folder tree.

    Writes config.yaml, metrics.jsonl, checkpoints/{last,best}.pt, swa_final.pt, report.json,
    confusion_matrix.png and curves.png to --out.
    """
    from dataclasses import replace

    from corese_edge.config import build_config
    from corese_edge.train.config import TrainConfig
    from corese_edge.train.trainer import default_out

    if no_progress:
        options["progress"] = False
    if options.get("resume") and not config_file and options.get("out"):
        # --resume continues the run as it was configured: its config.yaml is the base, and
        # options given now still win (changing the recipe breaks the exact continuation)
        saved = Path(options["out"]) / "config.yaml"
        config_file = saved if saved.is_file() else None
    cfg = build_config(TrainConfig, config_file, **options)
    if not cfg.out:
        cfg = replace(cfg, out=default_out(cfg))
    if nproc > 1:
        _launch_torchrun(cfg, nproc)
        return
    from corese_edge.train import train

    try:
        result = train(cfg)
    except KeyboardInterrupt:
        click.echo(_interrupted_line(Path(cfg.out)), err=True)
        sys.exit(130)
    if result.report:
        _print_train_summary(result)


def _interrupted_line(out: Path) -> str:
    """One line for Ctrl-C: what is kept and the command that continues the run."""
    if (out / "checkpoints" / "last.pt").is_file():
        return (f"interrupted; {out / 'checkpoints' / 'last.pt'} holds the last completed epoch; "
                f"continue with: corese-edge train --out {out} --resume")
    return f"interrupted before the first epoch completed; nothing to resume in {out}"


def _launch_torchrun(cfg, nproc: int) -> None:
    from corese_edge.config import config_to_dict, dump_yaml

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(dump_yaml(config_to_dict(cfg)))
        launch = fh.name
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "corese_edge", "train", "--config", launch]
    click.echo(f"launching: {' '.join(cmd)}", err=True)
    try:
        rc = subprocess.call(cmd)
    finally:
        os.unlink(launch)
    if rc != 0:
        raise UserError(f"distributed training failed (exit status {rc}); see the messages above")


def _print_train_summary(result) -> None:
    r = result.report
    test, best = r["test"], r["best"]["test"]
    click.echo(f"\nSWA model ({r['swa_models']} epochs averaged): test accuracy {test['accuracy']:.2%}, "
               f"mean class accuracy {test['mean_class_accuracy']:.2%}, macro-F1 {test['macro_f1']:.3f}")
    click.echo(f"best-on-validation (epoch {r['best']['epoch']}): test accuracy {best['accuracy']:.2%}")
    click.echo(f"outputs: {result.out_dir}  (swa_final.pt, report.json, confusion_matrix.png, curves.png)")


@click.command("evaluate", epilog="""\b
Examples:
  corese-edge evaluate --checkpoint runs/rafdb/swa_final.pt
  corese-edge evaluate --checkpoint model.pt --data ~/data/RAF-DB --split test --batch-size 64
""")
@click.option("--checkpoint", required=True, type=click.Path(), help="A corese-edge checkpoint.")
@click.option("--data", type=click.Path(), help="Dataset folder.  [default: the one recorded in the checkpoint]")
@click.option("--dataset", type=click.Choice(CHOICE_LAYOUTS), help="Force a layout.")
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--out", type=click.Path(), help="Report path.  [default: eval-<split>.json beside the checkpoint]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--skip-bad-images", is_flag=True)
def evaluate_command(checkpoint, data, dataset, split, batch_size, out, device, workers, skip_bad_images):
    """Evaluate a checkpoint; also checks that batch 1 and batch B give the same predictions."""
    from corese_edge.train.evaluate import EvaluateConfig, evaluate

    r = evaluate(EvaluateConfig(checkpoint, data, dataset, split, batch_size, out, device, workers, skip_bad_images))
    bi = r["batch_independence"]
    click.echo(f"{split}: accuracy {r['accuracy']:.2%}, mean class accuracy {r['mean_class_accuracy']:.2%}, "
               f"macro-F1 {r['macro_f1']:.3f} on {r['num_images']} images")
    click.echo(f"batch 1 vs batch {batch_size}: predictions {'agree' if bi['predictions_agree'] else 'DIFFER'} "
               f"(max |logit diff| {bi['max_abs_logit_diff']:.2e}, SE mode {r['se_mode']})")
    click.echo(f"report: {r['path']}")


@click.command("import-seed", epilog="""\b
Examples:
  corese-edge import-seed swa_model_final.pth --out coresse-rafdb.pt --num-classes 7
  corese-edge import-seed epoch_49.pth --out affectnet.pt --num-classes 8
  corese-edge import-seed ckpt.pth --out m.pt --num-classes 3 --class-names neg,neu,pos
""")
@click.argument("file", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="corese-edge checkpoint to write.")
@click.option("--num-classes", required=True, type=int)
@click.option("--class-names", help="Comma-separated, in index order.  [default: RAF-DB's 7 or AffectNet's 8]")
@click.option("--se-mode", type=click.Choice(["sample", "batch"]), default="sample", show_default=True)
@click.option("--img-size", type=int, default=224, show_default=True)
def import_seed_command(file, out, num_classes, class_names, se_mode, img_size):
    """Convert a seed-notebook checkpoint (per-epoch or final SWA) into a corese-edge checkpoint."""
    from corese_edge.model.seed import import_seed

    names = [n.strip() for n in class_names.split(",")] if class_names else None
    ckpt = import_seed(file, out, num_classes, names, se_mode, img_size)
    click.echo(f"wrote {out}: {ckpt.variant}, {ckpt.num_classes} classes ({', '.join(ckpt.class_names)}), SE {ckpt.se_mode}")


@click.command("demo", epilog="""\b
Examples:
  corese-edge demo
  corese-edge demo --out /tmp/demo --epochs 8
  corese-edge demo --out /tmp/quick --epochs 2 --img-size 32 --images-per-class 20 --bench-seconds 0.2   # a quick smoke run
""")
@click.option("--out", type=click.Path(), default="corese-demo", show_default=True, help="Folder for the data, the run and the exports.")
@click.option("--epochs", type=int, default=None, help="Training epochs.  [default: the demo recipe's]")
@click.option("--img-size", type=int, default=None, help="Training input size in pixels.  [default: 48]")
@click.option("--images-per-class", type=int, default=None,
              help="Synthetic training images per class; the test split gets a quarter as many.  [default: 200]")
@click.option("--bench-seconds", type=float, default=None,
              help="Seconds of timing per artifact and batch size, in the fastest-model pick and the benchmark.  "
                   "[default: 1.0]")
@click.option("--no-export", is_flag=True, help="Stop after training and evaluation.")
def demo_command(out, epochs, img_size, images_per_class, bench_seconds, no_export):
    """Generate the synthetic expression set, train coresse-lite with SWA, evaluate, export and benchmark."""
    from corese_edge.demo import DemoConfig, run_demo

    options = {}
    if img_size is not None:
        options["img_size"] = img_size
    if images_per_class is not None:
        options["train_per_class"] = images_per_class
        options["test_per_class"] = max(1, images_per_class // 4)
    if bench_seconds is not None:
        options["bench_seconds"] = bench_seconds
    run_demo(DemoConfig(out=out, epochs=epochs, export=not no_export, **options))
