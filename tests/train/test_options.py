"""Trainer options, each checked by its effect inside a real run, not just by running.

One short run on a 3-class, imbalanced set uses ``--amp bf16 --channels-last --balance loss
--init-from CKPT`` (a 7-class checkpoint, so the head is re-initialised), label smoothing without
Mixup/CutMix, and a one-epoch warm-up. The test watches the run from the inside: forward hooks on
the model the trainer builds, and the loss's inputs and outputs at every training step.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corese_edge.model import load_checkpoint
from corese_edge.train import TrainConfig, train
from corese_edge.train import trainer as trainer_mod
from tests.train.conftest import IMBALANCED_COUNTS

pytestmark = pytest.mark.slow

LR, MIN_LR, SMOOTHING = 2e-3, 1e-5, 0.1


@pytest.fixture(scope="module")
def watched_run(imbalanced_faces, lite_checkpoint, tmp_path_factory):
    seen = {"initial_state": None, "inputs": [], "conv_out": [], "linear_out": [], "loss": []}

    real_build = trainer_mod.build_model

    def build_and_watch(cfg, num_classes):
        model = real_build(cfg, num_classes)
        seen["initial_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        conv, linear = model.resnet.conv1, model.classifier[0]

        def training(module):
            return module.training and torch.is_grad_enabled()

        def on_input(module, args):
            if training(module):
                x = args[0]
                seen["inputs"].append((x.dtype, x.is_contiguous(memory_format=torch.channels_last),
                                       conv.weight.is_contiguous(memory_format=torch.channels_last),
                                       conv.weight.dtype))

        model.register_forward_pre_hook(on_input)
        conv.register_forward_hook(lambda m, a, out: seen["conv_out"].append(out.dtype) if training(m) else None)
        linear.register_forward_hook(lambda m, a, out: seen["linear_out"].append(out.dtype) if training(m) else None)
        return model

    real_loss = trainer_mod.SoftTargetCE.forward

    def loss_and_watch(self, logits, target):
        loss = real_loss(self, logits, target)
        if torch.is_grad_enabled():
            seen["loss"].append((self.w.detach().cpu().clone(), logits.detach().float().cpu(),
                                 target.detach().cpu(), float(loss.detach())))
        return loss

    cfg = TrainConfig(data=str(imbalanced_faces), dataset="folder", model="coresse-lite", img_size=32, epochs=2,
                      batch_size=8, lr=LR, min_lr=MIN_LR, warmup_epochs=1, mixup=0.0, cutmix=0.0,
                      label_smoothing=SMOOTHING, amp="bf16", channels_last=True, balance="loss",
                      init_from=str(lite_checkpoint), pretrained="none", device="cpu", workers=0, seed=4,
                      progress=False, out=str(tmp_path_factory.mktemp("options") / "run"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_mod, "build_model", build_and_watch)
        mp.setattr(trainer_mod.SoftTargetCE, "forward", loss_and_watch)
        result = train(cfg)
    rows = [json.loads(line) for line in (result.out_dir / "metrics.jsonl").read_text().splitlines()]
    return cfg, result, rows, seen


def test_amp_bf16_autocasts_the_training_forward_pass(watched_run):
    _, _, rows, seen = watched_run
    steps = sum(r["steps"] for r in rows)
    assert len(seen["conv_out"]) == len(seen["linear_out"]) == steps > 0
    assert set(seen["conv_out"]) == {torch.bfloat16} and set(seen["linear_out"]) == {torch.bfloat16}
    # autocast, not a bf16 model: float32 inputs and master weights
    assert {(dtype, w_dtype) for dtype, _, _, w_dtype in seen["inputs"]} == {(torch.float32, torch.float32)}


def test_channels_last_inputs_and_weights(watched_run):
    _, _, _, seen = watched_run
    assert seen["inputs"]
    assert all(x_cl and w_cl for _, x_cl, w_cl, _ in seen["inputs"])


def test_balance_loss_weights_are_inverse_class_frequency(watched_run, imbalanced_faces):
    from corese_edge.data.layouts import load_index, stratified_split

    cfg, result, _, seen = watched_run
    assert result.report["dataset"]["class_names"] == list(IMBALANCED_COUNTS)
    # the class counts of the training part, after the validation split is carved from it
    train_part, _ = stratified_split(load_index(imbalanced_faces, "folder").split("train"), cfg.val_fraction, cfg.seed)
    counts = np.bincount([s.label for s in train_part], minlength=len(IMBALANCED_COUNTS)).astype(np.float64)
    assert len(set(counts)) == len(counts)  # still imbalanced
    expected = counts.sum() / (len(counts) * counts)  # mean weight over the training images is 1
    for w, *_ in seen["loss"]:
        np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)


def test_label_smoothing_without_mixup_is_smoothed_cross_entropy(watched_run):
    _, _, _, seen = watched_run
    k = len(IMBALANCED_COUNTS)
    assert seen["loss"]
    for w, logits, target, loss in seen["loss"]:
        y = target.argmax(1)
        smooth = torch.full_like(target, SMOOTHING / k)
        smooth[torch.arange(len(y)), y] = 1 - SMOOTHING + SMOOTHING / k
        assert torch.equal(target, smooth)  # no Mixup: every row is a smoothed one-hot
        # torch's own label-smoothed, class-weighted CE (summed; the trainer averages over the batch)
        weight = w if w.numel() else None  # the class weights are test_balance_loss's business
        ref = F.cross_entropy(logits, y, weight=weight, label_smoothing=SMOOTHING, reduction="sum") / len(y)
        assert loss == pytest.approx(ref.item(), rel=1e-5)


def test_init_from_loads_the_checkpoint_and_reinitialises_a_mismatched_head(watched_run, lite_checkpoint):
    _, _, _, seen = watched_run
    src = load_checkpoint(lite_checkpoint).state_dict
    start = seen["initial_state"]
    assert start.keys() == src.keys()
    assert src["classifier.3.weight"].shape[0] == 7 and start["classifier.3.weight"].shape[0] == 3
    for key in src:
        if not key.startswith("classifier.3."):
            assert torch.equal(start[key], src[key]), key


def test_warmup_advances_every_step_then_cosine(watched_run):
    _, _, rows, _ = watched_run
    s = rows[0]["steps"]
    assert s >= 3 and [len(r["step_lr"]) for r in rows] == [s, s]
    warm = rows[0]["step_lr"]
    # linear warm-up over the first epoch's steps, starting above zero
    assert warm == pytest.approx([LR * (i + 1) / s for i in range(s)], rel=1e-9)
    floor = MIN_LR / LR
    cosine = [LR * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * i / s))) for i in range(s)]
    assert rows[1]["step_lr"] == pytest.approx(cosine, rel=1e-9)
