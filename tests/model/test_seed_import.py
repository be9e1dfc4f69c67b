"""Seed-notebook checkpoints, both formats, against an independent reference forward pass.

The reference re-creates the notebook's module the way the notebook built it (torchvision ResNet
with ``fc = Identity``, timm ConvNeXt with its head removed, the batch-mean SE gate) and shares no
code with corese_edge.model.
"""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn
from torch.optim.swa_utils import AveragedModel

from corese_edge.errors import CheckpointError
from corese_edge.model import load_checkpoint
from corese_edge.model.seed import import_seed


class SeedSE(nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.fc1 = nn.Linear(c, c // r, bias=False)
        self.fc2 = nn.Linear(c // r, c, bias=False)

    def forward(self, x):
        w = x.mean(dim=0)  # the notebook's batch-mean gate
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(w))))
        return x * w


class SeedModel(nn.Module):
    """The notebook's module, at coresse-lite size (torchvision resnet18 + timm convnext_atto)."""

    def __init__(self, num_classes):
        super().__init__()
        self.resnet = torchvision.models.resnet18(weights=None)
        self.resnet.fc = nn.Identity()
        self.convnext = timm.create_model("convnext_atto", pretrained=False)
        self.convnext.head = nn.Identity()
        self.se_fusion = SeedSE(512 + 320)
        self.classifier = nn.Sequential(nn.Linear(832, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, num_classes))

    def forward(self, x):
        r = self.resnet(x)
        c = self.convnext.forward_features(x).mean(dim=(2, 3))
        return self.classifier(self.se_fusion(torch.cat([r, c], dim=1)))


@pytest.fixture(scope="module")
def seed_model():
    torch.manual_seed(3)
    m = SeedModel(7)
    # non-trivial BatchNorm statistics, as a trained model has
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(8, 3, 64, 64))
    return m.eval()


@pytest.fixture(params=["epoch", "swa"])
def seed_file(request, seed_model, tmp_path):
    path = tmp_path / f"seed_{request.param}.pth"
    if request.param == "epoch":
        opt = torch.optim.AdamW(seed_model.parameters(), lr=3e-4)
        torch.save({"epoch": 12, "model_state": seed_model.state_dict(), "optimizer_state": opt.state_dict()}, path)
    else:
        swa = AveragedModel(seed_model)
        swa.update_parameters(seed_model)
        sd = swa.state_dict()
        assert all(k.startswith("module.") for k in sd if k != "n_averaged") and "n_averaged" in sd
        torch.save({"epoch": 49, "model_state": sd}, path)
    return path


def test_import_matches_seed_logits_at_batch_1(seed_file, seed_model, tmp_path):
    out = tmp_path / "imported.pt"
    import_seed(seed_file, out, num_classes=7)
    ckpt = load_checkpoint(out)
    assert ckpt.se_mode == "sample" and ckpt.variant == "coresse-lite"
    assert ckpt.class_names[0] == "Surprise" and ckpt.class_names[6] == "Neutral"
    model = ckpt.build_model()
    torch.manual_seed(1)
    with torch.no_grad():
        for _ in range(4):
            x = torch.randn(1, 3, 64, 64)
            assert (model(x) - seed_model(x)).abs().max().item() <= 1e-4


def test_batch_mode_import_reproduces_the_seed_at_any_batch(seed_file, seed_model, tmp_path):
    out = tmp_path / "imported_batch.pt"
    import_seed(seed_file, out, num_classes=7, se_mode="batch")
    model = load_checkpoint(out).build_model()
    x = torch.randn(5, 3, 64, 64)
    with torch.no_grad():
        assert (model(x) - seed_model(x)).abs().max().item() <= 1e-4


def test_wrong_class_count_and_foreign_files_are_clear_errors(seed_file, tmp_path):
    with pytest.raises(CheckpointError, match="7 outputs but --num-classes is 8"):
        import_seed(seed_file, tmp_path / "x.pt", num_classes=8)
    foreign = tmp_path / "resnet.pth"
    torch.save({"epoch": 1, "model_state": torchvision.models.resnet18().state_dict()}, foreign)
    with pytest.raises(CheckpointError, match="not a CoRes-SE checkpoint"):
        import_seed(foreign, tmp_path / "y.pt", num_classes=7)
    notdict = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), notdict)
    with pytest.raises(CheckpointError, match="not a CoRes-SE seed checkpoint"):
        import_seed(notdict, tmp_path / "z.pt", num_classes=7)
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()
