"""The CoRes-SE trainer: Mixup/CutMix, per-step warm-up + cosine, AMP, SWA + update_bn, exact
resume from atomic per-epoch checkpoints, and DDP under torchrun.

Run folder (``cfg.out``)::

    config.yaml  metrics.jsonl  checkpoints/last.pt  checkpoints/best.pt  swa_final.pt
    report.json  confusion_matrix.png  curves.png

``metrics.jsonl`` holds one row per epoch: train loss and accuracy, the validation metrics,
``lr`` (after the epoch), ``step_lr`` (the learning rate of each optimizer step, in order),
throughput, and ``swa_models`` (how many epochs SWA has averaged so far).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn
from torch.utils.data import DataLoader

from corese_edge import __version__
from corese_edge.atomic import write_json, write_text
from corese_edge.config import config_to_dict, dump_yaml
from corese_edge.errors import CheckpointError, UserError
from corese_edge.model.checkpoint import Checkpoint, load_checkpoint
from corese_edge.model.coresse import CoResSE
from corese_edge.model.pretrained import apply_pretrained
from corese_edge.preprocessing import Preprocessing
from corese_edge.train.config import TrainConfig
from corese_edge.train.data import DataSplits, prepare_splits
from corese_edge.train.device import resolve_device
from corese_edge.train.distributed import DistContext, init_distributed, shutdown
from corese_edge.train.evaluate import predict_logits
from corese_edge.train.metrics import classification_report
from corese_edge.train.sampling import EpochSampler, EvenBatchSampler

log = logging.getLogger(__name__)

REPORT_SCHEMA = "corese-edge/report/1"
METRICS_SCHEMA = "corese-edge/metrics/1"

#: ``on_epoch_end(epoch, model)``: see :class:`Trainer`.
EpochHook = Callable[[int, nn.Module], None]


class TrainingDiverged(UserError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    out_dir: Path
    swa_path: Path
    best_path: Path
    last_path: Path
    report: dict[str, Any]

    @property
    def report_path(self) -> Path:
        return self.out_dir / "report.json"


def default_out(cfg: TrainConfig) -> str:
    return str(Path("runs") / f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}")


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Every random draw of an epoch (Mixup, dropout) derives from (seed, epoch, rank)."""
    s = int(np.random.SeedSequence([seed, epoch, rank, 11]).generate_state(1)[0])
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warm-up from 1/warmup (never 0) to 1, then cosine down to ``floor`` (= min_lr/lr)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class SoftTargetCE(nn.Module):
    """Cross-entropy against soft (mixed, smoothed) targets, optionally class-weighted."""

    def __init__(self, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("w", class_weights if class_weights is not None else torch.empty(0), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits.float(), dim=-1)
        per = -(target * logp)
        if self.w.numel():
            per = per * self.w
        return per.sum(dim=-1).mean()


def _smooth_one_hot(y: torch.Tensor, n: int, smoothing: float) -> torch.Tensor:
    off = smoothing / n
    t = torch.full((y.shape[0], n), off, device=y.device)
    t.scatter_(1, y.view(-1, 1), 1.0 - smoothing + off)
    return t


def build_model(cfg: TrainConfig, num_classes: int) -> CoResSE:
    model = CoResSE(cfg.model, num_classes, cfg.se_mode)
    if cfg.init_from:
        ckpt = load_checkpoint(cfg.init_from)
        if ckpt.variant != cfg.model:
            raise CheckpointError(f"--init-from {cfg.init_from} is a {ckpt.variant!r} model, not {cfg.model!r}; pass --model {ckpt.variant}")
        state = dict(ckpt.state_dict)
        if ckpt.num_classes != num_classes:
            log.warning("re-initialising the head: checkpoint has %d classes, dataset %d", ckpt.num_classes, num_classes)
            state = {k: v for k, v in state.items() if not k.startswith("classifier.3.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("classifier.3.") for k in missing):
            raise CheckpointError(f"--init-from {cfg.init_from}: weights do not fit {cfg.model}")
    else:
        apply_pretrained(model, cfg.pretrained)
    return model


class Trainer:
    """One training run.  Use :func:`train` unless you need the pieces.

    ``on_epoch_end(epoch, model)``, if given, is called on every rank after epoch ``epoch``
    (0-based) has made its optimizer steps and its SWA update, before validation and the
    checkpoint.  ``model`` is the unwrapped network (not the DDP wrapper) in training mode; the
    hook may read or copy it but must not change it.  Its uses: keeping every epoch's weights,
    comparing ranks.
    """

    def __init__(self, cfg: TrainConfig, on_epoch_end: EpochHook | None = None) -> None:
        if not cfg.out:
            cfg = replace(cfg, out=default_out(cfg))
        self.cfg = cfg
        self.on_epoch_end = on_epoch_end
        self.out = Path(cfg.out)
        self.device = resolve_device(cfg.device)
        self.dist = DistContext()
        self.amp = amp_dtype(cfg.amp, self.device)
        self.prep = Preprocessing(size=cfg.img_size)
        #: how the run's face template was obtained (learn_face_template's stats); set on rank 0
        self.face_template_stats: dict[str, Any] | None = None

    # ----------------------------------------------------------------- setup
    def _check_out_dir(self) -> None:
        last = self.out / "checkpoints" / "last.pt"
        if last.exists() and not self.cfg.resume:
            raise UserError(f"{self.out} already holds a run ({last}); pass --resume to continue it, or choose another --out")
        if self.cfg.resume and not last.exists():
            raise UserError(f"--resume: no checkpoint at {last}; start without --resume")

    def _loader(self, dataset, batch_sampler=None, batch_size: int | None = None, persistent: bool = False) -> DataLoader:
        from corese_edge.data.dataset import make_loader

        return make_loader(dataset, self.cfg.workers, batch_sampler=batch_sampler, batch_size=batch_size,
                           persistent=persistent, pin_memory=self.device.type == "cuda")

    def _caches(self, splits: DataSplits):
        """The train and val :class:`ImageCache` (``--cache``), or ``(None, None)``."""
        from corese_edge.data.dataset import CACHE_AUTO_LIMIT, ImageCache

        cfg = self.cfg
        need = ImageCache.nbytes_for(len(splits.train) + len(splits.val), cfg.img_size)
        if cfg.cache == "off" or (cfg.cache == "auto" and need > CACHE_AUTO_LIMIT):
            if cfg.cache == "auto" and self.dist.is_main:
                log.info("not caching images: %.2f GB at %d px is over the %.2f GB of --cache auto", need / 1e9,
                         cfg.img_size, CACHE_AUTO_LIMIT / 1e9)
            return None, None
        progress = cfg.progress and self.dist.is_main
        interp, shared = self.prep.cv2_interpolation, cfg.workers > 0
        return (ImageCache.build(splits.train, cfg.img_size, interp, shared=shared, progress=progress),
                ImageCache.build(splits.val, cfg.img_size, interp, shared=shared, progress=progress) if splits.val else None)

    def run(self) -> TrainResult:
        cfg = self.cfg
        self.dist = init_distributed(self.device.type)
        try:
            if self.dist.enabled and self.device.type == "cuda":
                self.device = torch.device("cuda", self.dist.local_rank)
            if self.dist.is_main:
                self._check_out_dir()
            self.dist.barrier()
            return self._run()
        finally:
            shutdown(self.dist)

    def _run(self) -> TrainResult:
        from corese_edge.data.dataset import FERDataset
        from corese_edge.data.transforms import eval_transform, train_transform

        cfg, dist, dev = self.cfg, self.dist, self.device
        splits = prepare_splits(cfg.data, cfg.dataset, cfg.val_fraction, cfg.seed, cfg.skip_bad_images, progress=cfg.progress and dist.is_main)
        self.splits = splits
        n_cls = len(splits.class_names)
        if dist.is_main and not cfg.resume:  # a resumed run keeps its template (read from last.pt below)
            self._learn_face_template(splits)
        if dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_text(self.out / "config.yaml", dump_yaml(self._resolved_config(splits)))
            log.info("%s", splits.describe())

        train_cache, val_cache = self._caches(splits)
        train_ds = FERDataset(splits.train, train_transform(self.prep), seed=cfg.seed, cache=train_cache)
        sampler = EpochSampler(train_ds.labels, cfg.seed, balanced=cfg.balance == "sampler", rank=dist.rank, world=dist.world)
        train_loader = self._loader(train_ds, EvenBatchSampler(sampler, cfg.batch_size, with_epoch=True), persistent=True)
        steps_per_epoch = len(train_loader)
        total_steps = steps_per_epoch * cfg.epochs
        warmup_steps = steps_per_epoch * cfg.effective_warmup_epochs

        torch.manual_seed(cfg.seed)  # the initial weights depend on --seed only (same on every rank)
        model = build_model(cfg, n_cls).to(dev)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        swa_model = AveragedModel(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        floor = cfg.min_lr / cfg.lr
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup_steps, floor))
        scaler = torch.amp.GradScaler(dev.type, enabled=self.amp == torch.float16)

        weights = None
        if cfg.balance == "loss":
            counts = np.bincount(train_ds.labels, minlength=n_cls).astype(np.float64)
            w = counts.sum() / np.maximum(counts, 1) / n_cls
            weights = torch.as_tensor(w, dtype=torch.float32)
        criterion = SoftTargetCE(weights).to(dev)
        mixup = None
        if cfg.mixup > 0 or cfg.cutmix > 0:
            from timm.data import Mixup

            mixup = Mixup(
                mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mix_prob,
                switch_prob=cfg.mix_switch_prob, mode="batch",
                label_smoothing=cfg.label_smoothing, num_classes=n_cls,
            )

        start_epoch, best_value, best_epoch, history = 0, -1.0, -1, []
        last_path = self.out / "checkpoints" / "last.pt"
        best_path = self.out / "checkpoints" / "best.pt"
        if cfg.resume:
            state = load_checkpoint(last_path)
            ts = state.train_state or {}
            model.load_state_dict(state.state_dict)
            optimizer.load_state_dict(ts["optimizer"])
            scheduler.load_state_dict(ts["scheduler"])
            scaler.load_state_dict(ts["scaler"])
            swa_model.load_state_dict(ts["swa_state_dict"])
            start_epoch = state.epoch + 1
            self.prep = replace(self.prep, face_template=state.preprocessing.face_template)
            self.face_template_stats = (state.dataset or {}).get("face_template") or {
                "source": self.prep.face_template.source, "reason": "resumed from a checkpoint that records no template statistics",
                "template": self.prep.face_template.to_dict()}
            best_value, best_epoch = float(ts["best_value"]), int(ts["best_epoch"])
            history = list(ts["history"])
            if dist.is_main:
                log.info("resuming %s after epoch %d", self.out, state.epoch + 1)

        net: nn.Module = model
        if dist.enabled:
            net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

        tb = self._tensorboard() if dist.is_main else None
        val_ds = FERDataset(splits.val, eval_transform(self.prep), cache=val_cache)
        for epoch in range(start_epoch, cfg.epochs):
            seed_epoch(cfg.seed, epoch, dist.rank)
            sampler.set_epoch(epoch)
            train_ds.set_epoch(epoch)
            stats = self._train_epoch(net, train_loader, optimizer, scheduler, scaler, criterion, mixup, epoch, steps_per_epoch)
            if epoch >= cfg.swa_start_epoch:
                swa_model.update_parameters(model)
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch, model)
            row: dict[str, Any] = {"epoch": epoch + 1, **stats}
            if dist.is_main:
                val = self._evaluate(model, val_ds, splits.class_names) if len(val_ds) else None
                if val is not None:
                    row.update(val_accuracy=val["accuracy"], val_mean_class_accuracy=val["mean_class_accuracy"],
                               val_macro_f1=val["macro_f1"], val_loss=val["loss"])
                    value = val[cfg.select_metric]
                else:  # no validation split: the latest epoch is the best
                    value = float(epoch)
                row["swa_models"] = int(swa_model.n_averaged.item())
                history.append(row)
                if value > best_value:
                    best_value, best_epoch = value, epoch
                    self._checkpoint(model, splits, epoch, "best", metrics={"val": val}).save(best_path)
                ckpt = self._checkpoint(model, splits, epoch, "last")
                ckpt.train_state = {
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(), "swa_state_dict": swa_model.state_dict(),
                    "best_value": best_value, "best_epoch": best_epoch, "history": history,
                }
                ckpt.save(last_path)
                write_text(self.out / "metrics.jsonl", "".join(json.dumps({"schema": METRICS_SCHEMA, **h}) + "\n" for h in history))
                if tb is not None:
                    for k, v in row.items():
                        if isinstance(v, (int, float)) and k != "epoch":
                            tb.add_scalar(k, v, epoch + 1)
                self._print_epoch(row)
            dist.barrier()

        result = None
        if dist.is_main:
            result = self._finish(model, swa_model, train_ds, history, splits, best_path, last_path, best_epoch)
            if tb is not None:
                tb.close()
        dist.barrier()
        return result if result is not None else TrainResult(self.out, self.out / "swa_final.pt", best_path, last_path, {})

    # ------------------------------------------------------------- the epoch
    def _train_epoch(self, net, loader, optimizer, scheduler, scaler, criterion, mixup, epoch, steps) -> dict[str, float]:
        cfg, dev, dist = self.cfg, self.device, self.dist
        net.train()
        n_cls = len(self.splits.class_names)
        tot_loss = tot_correct = tot_seen = 0.0
        step_lr: list[float] = []  # the learning rate each optimizer step used
        t0 = time.perf_counter()
        bar = _progress(loader, total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", enabled=cfg.progress and dist.is_main)
        for step, (x, y) in enumerate(bar):
            x = x.to(dev, non_blocking=True)
            y = y.to(dev, non_blocking=True)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if mixup is not None:
                x, target = mixup(x, y)
            else:
                target = _smooth_one_hot(y, n_cls, cfg.label_smoothing)
            with _autocast(dev, self.amp):
                logits = net(x)
                loss = criterion(logits, target)
            loss_value = dist.mean(float(loss.detach()))
            if not math.isfinite(loss_value):
                raise TrainingDiverged(
                    f"loss became {loss_value} at epoch {epoch + 1}, step {step + 1}; the last good checkpoint is "
                    f"{self.out / 'checkpoints' / 'last.pt'}; lower --lr or use --amp off"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            step_lr.append(optimizer.param_groups[0]["lr"])
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            b = x.shape[0]
            correct = float((logits.detach().argmax(1) == target.argmax(1)).sum())
            tot_loss += loss_value * b
            tot_correct += correct
            tot_seen += b
            if hasattr(bar, "set_postfix") and (step % 5 == 0 or step + 1 == steps):
                dt = time.perf_counter() - t0
                bar.set_postfix(loss=f"{tot_loss / tot_seen:.3f}", acc=f"{tot_correct / tot_seen:.3f}",
                                lr=f"{optimizer.param_groups[0]['lr']:.2e}", img_s=f"{tot_seen * dist.world / max(dt, 1e-9):.1f}")
        seen, correct = dist.sum([tot_seen, tot_correct])
        dt = time.perf_counter() - t0
        return {
            "train_loss": tot_loss / max(tot_seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "lr": optimizer.param_groups[0]["lr"],
            "step_lr": step_lr,
            "images_per_s": seen / max(dt, 1e-9),
            "train_images": int(seen),
            "steps": steps,
            "world_size": dist.world,
            "epoch_time_s": dt,
        }

    def _evaluate(self, model: nn.Module, dataset, class_names) -> dict[str, Any]:
        logits, targets = predict_logits(model, dataset, self.cfg.eval_batch_size, self.device, self.cfg.workers,
                                         amp=self.amp, channels_last=self.cfg.channels_last, progress=False)
        report = classification_report(targets, logits.argmax(1), class_names)
        report["loss"] = float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(targets)))
        return report

    # ------------------------------------------------------------- finishing
    def _finish(self, model, swa_model, train_ds, history, splits: DataSplits, best_path, last_path, best_epoch) -> TrainResult:
        from corese_edge.data.dataset import FERDataset
        from corese_edge.data.transforms import eval_transform
        from corese_edge.train.plots import plot_confusion_matrix, plot_curves

        cfg = self.cfg
        names = splits.class_names
        swa_path = self.out / "swa_final.pt"
        final = model
        if int(swa_model.n_averaged.item()) > 0:
            final = swa_model.module
            # BatchNorm statistics of the averaged weights, from the training loader (as the seed does)
            seed_epoch(cfg.seed, cfg.epochs, 0)
            train_ds.set_epoch(cfg.epochs)
            bn_loader = self._loader(train_ds, batch_size=cfg.batch_size)
            _update_bn(bn_loader, final, self.device, cfg.channels_last, cfg.progress)
        val_ds = FERDataset(splits.val, eval_transform(self.prep))
        test_ds = FERDataset(splits.test, eval_transform(self.prep))
        swa_val = self._evaluate(final, val_ds, names) if len(val_ds) else None
        swa_test = self._evaluate(final, test_ds, names)
        swa_ckpt = self._checkpoint(final, splits, cfg.epochs - 1, "swa", metrics={"val": swa_val, "test": swa_test})
        swa_ckpt.metrics["swa_models"] = int(swa_model.n_averaged.item())
        swa_ckpt.save(swa_path)

        best = load_checkpoint(best_path).build_model().to(self.device)
        best_val = self._evaluate(best, val_ds, names) if len(val_ds) else None
        best_test = self._evaluate(best, test_ds, names)
        report = {
            "schema": REPORT_SCHEMA,
            "model": cfg.model,
            "checkpoint": str(swa_path),
            "swa_models": int(swa_model.n_averaged.item()),
            "world_size": self.dist.world,
            "dataset": {"root": str(splits.root), "layout": splits.layout, "class_names": list(names),
                        "train": len(splits.train), "val": len(splits.val), "test": len(splits.test),
                        "skipped_bad_images": splits.skipped},
            "face_template": self.face_template_stats,
            "val": swa_val,
            "test": swa_test,
            "best": {"epoch": best_epoch + 1, "checkpoint": str(best_path), "selected_on": f"val {cfg.select_metric}",
                     "val": best_val, "test": best_test},
            "corese_edge_version": __version__,
        }
        write_json(self.out / "report.json", report)
        plot_confusion_matrix(swa_test["confusion_matrix"], names, self.out / "confusion_matrix.png",
                              f"{cfg.model} SWA, test accuracy {swa_test['accuracy']:.1%}")
        plot_curves(history, self.out / "curves.png", cfg.swa_start_epoch)
        return TrainResult(self.out, swa_path, best_path, last_path, report)

    # --------------------------------------------------------------- helpers
    def _resolved_config(self, splits: DataSplits) -> dict[str, Any]:
        d = config_to_dict(self.cfg)
        d["dataset"] = splits.layout
        d["data"] = str(splits.root)
        return d

    def _learn_face_template(self, splits: DataSplits) -> None:
        """Set the run's face template from the training images (train + the val carved from it).

        Never stops the run: with ``face_template_images = 0`` or no face model the default
        template is kept, recorded as such (a warning for the missing model)."""
        from corese_edge.data.face_template import describe_template, learn_face_template
        from corese_edge.preprocessing import DEFAULT_FACE_TEMPLATE

        cfg = self.cfg
        template, reason, level = DEFAULT_FACE_TEMPLATE, None, logging.INFO
        stats: dict[str, Any] | None = None
        if cfg.face_template_images <= 0:
            reason = "face_template_images is 0 (face detection turned off)"
        else:
            from corese_edge.runtime.faces import FaceDetector

            try:
                detector = FaceDetector(cfg.face_model or None)
            except UserError as exc:  # MissingFaceModel: offline without the file, or a wrong file
                reason, level = f"no face model ({exc})", logging.WARNING
            else:
                paths = [s.path for s in splits.train + splits.val]
                template, stats = learn_face_template(paths, detector, sample=cfg.face_template_images, seed=cfg.seed,
                                                      progress=cfg.progress, size=cfg.img_size)
        if stats is None:
            stats = {"source": "default", "reason": reason, "images": 0, "found": 0, "template": template.to_dict()}
        self.prep = replace(self.prep, face_template=template)
        self.face_template_stats = stats
        log.log(level, "%s", describe_template(template, stats))  # one line; a warning when the model is missing

    def _checkpoint(self, model: nn.Module, splits: DataSplits, epoch: int, kind: str, metrics=None) -> Checkpoint:
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        dataset: dict[str, Any] = {"root": str(splits.root), "layout": splits.layout}
        if self.face_template_stats is not None:
            dataset["face_template"] = self.face_template_stats
        return Checkpoint(
            path=None, variant=self.cfg.model, num_classes=len(splits.class_names), se_mode=self.cfg.se_mode,
            class_names=list(splits.class_names), preprocessing=self.prep, state_dict=state,
            config=self._resolved_config(splits), dataset=dataset,
            epoch=epoch, kind=kind, metrics=_strip_none(metrics or {}),
        )

    def _print_epoch(self, row: dict[str, Any]) -> None:
        val = f" val_acc {row['val_accuracy']:.4f}" if "val_accuracy" in row else ""
        print(f"epoch {row['epoch']}/{self.cfg.epochs}: loss {row['train_loss']:.4f} "
              f"train_acc {row['train_accuracy']:.4f}{val} lr {row['lr']:.2e} {row['images_per_s']:.1f} img/s", flush=True)

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        return SummaryWriter(str(self.out / "tensorboard"))


def _strip_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _update_bn(loader, model, device, channels_last: bool, progress: bool) -> None:
    def inputs():
        for x, _ in _progress(loader, total=len(loader), desc="SWA update_bn", enabled=progress):
            x = x.to(device)
            yield x.contiguous(memory_format=torch.channels_last) if channels_last else x

    update_bn(inputs(), model, device=device)


def _progress(it, total: int, desc: str, enabled: bool):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True)


def train(cfg: TrainConfig, on_epoch_end: EpochHook | None = None) -> TrainResult:
    """Train CoRes-SE as ``cfg`` says; returns the paths and the final report (rank 0).

    ``on_epoch_end``: see :class:`Trainer`."""
    return Trainer(cfg, on_epoch_end).run()
