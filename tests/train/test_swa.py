"""SWA averages the weights of the epochs from ``swa_start`` on (README: "SWA over the last quarter").

The trainer's ``on_epoch_end`` hook keeps a copy of every epoch's weights; the SWA checkpoint's
parameters must be their mean over the averaged epochs. ``update_bn`` runs after averaging and
rewrites only BatchNorm's running statistics (buffers), never parameters, so the comparison is
over ``named_parameters()``.
"""
from __future__ import annotations

import pytest
import torch

from corese_edge.model import CoResSE, load_checkpoint
from corese_edge.train import TrainConfig, train

pytestmark = pytest.mark.slow

EPOCHS = 4
SWA_START = 0.25  # averaging from the end of epoch int(0.25 * 4) = 1 (0-based): epochs 1, 2, 3


@pytest.fixture(scope="module")
def swa_run(small_faces, tmp_path_factory):
    kept: dict[int, dict[str, torch.Tensor]] = {}

    def keep(epoch, model):
        kept[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    cfg = TrainConfig(data=str(small_faces), model="coresse-test", img_size=32, epochs=EPOCHS, batch_size=8,
                      lr=2e-3, warmup_epochs=1, swa_start=SWA_START, mixup=0.0, cutmix=0.0, pretrained="none",
                      workers=0, seed=2, progress=False, out=str(tmp_path_factory.mktemp("swa") / "run"))
    result = train(cfg, on_epoch_end=keep)
    return cfg, result, kept


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_swa_weights_are_the_mean_of_the_averaged_epochs(swa_run):
    cfg, result, kept = swa_run
    assert sorted(kept) == list(range(EPOCHS))
    averaged = list(range(cfg.swa_start_epoch, EPOCHS))
    assert len(averaged) >= 3
    assert result.report["swa_models"] == len(averaged)

    names = [n for n, _ in CoResSE("coresse-test", 7).named_parameters()]
    swa = load_checkpoint(result.swa_path)
    assert swa.metrics["swa_models"] == len(averaged)
    swa_params = {n: swa.state_dict[n] for n in names}
    mean = {n: torch.stack([kept[e][n].double() for e in averaged]).mean(0) for n in names}
    last = {n: kept[EPOCHS - 1][n] for n in names}
    mean_all = {n: torch.stack([kept[e][n].double() for e in kept]).mean(0) for n in names}

    # float32 running average vs a float64 mean: agreement to a few float32 ulps
    for n in names:
        torch.testing.assert_close(swa_params[n].double(), mean[n], rtol=1e-5, atol=1e-6, msg=n)
    # ... and clearly not the last epoch's weights, nor the mean including the epoch before swa_start
    assert _max_diff(swa_params, last) > 1e-4
    assert _max_diff(swa_params, mean_all) > 1e-4


def test_update_bn_recomputed_the_running_statistics(swa_run):
    """The averaged weights get BatchNorm statistics of their own: neither the untouched ones that
    AveragedModel copied at the start (mean 0) nor those of any one epoch."""
    _, result, kept = swa_run
    swa = load_checkpoint(result.swa_path).state_dict
    stats = {k: swa[k] for k in swa if k.endswith("running_mean")}
    assert stats
    assert max(v.abs().max().item() for v in stats.values()) > 1e-3
    for epoch_state in kept.values():
        assert _max_diff(stats, {k: epoch_state[k] for k in stats}) > 1e-6
