"""The CoRes-SE module, its registry, checkpoints and the public load_model API."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from corese_edge.errors import CheckpointError, UserError
from corese_edge.model import VARIANTS, CoResSE, get_variant, load_checkpoint
from corese_edge.model.pretrained import apply_pretrained


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_forward_shapes_and_seed_key_names(name):
    v = get_variant(name)
    model = CoResSE(name, num_classes=5).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 3, 64, 64))
        logits = model(torch.randn(2, 3, 64, 64))
    assert feats.shape == (2, v.features)
    assert logits.shape == (2, 5)
    keys = model.state_dict().keys()
    assert model.state_dict()["se_fusion.fc1.weight"].shape == (v.se_hidden, v.features)
    assert model.state_dict()["classifier.3.weight"].shape == (5, v.hidden)
    assert not any(k.startswith("convnext.head") for k in keys), "the seed dropped ConvNeXt's head (and its norm)"
    assert not any(k.startswith("resnet.fc") for k in keys)


def test_full_model_matches_published_size():
    n = sum(p.numel() for p in CoResSE("coresse", 7).parameters())
    assert abs(n / 1e6 - 53.8) < 0.1
    assert get_variant("coresse").features == 2816 and get_variant("coresse").se_hidden == 176


def test_unknown_variant_is_a_user_error():
    with pytest.raises(UserError, match="coresse-lite"):
        get_variant("resnet9000")


def test_se_sample_mode_is_batch_independent_and_batch_mode_is_not():
    torch.manual_seed(0)
    model = CoResSE("coresse-lite", 7).eval()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        alone = torch.cat([model(x[i : i + 1]) for i in range(6)])
        together = model(x)
        assert torch.allclose(alone, together, atol=1e-5)
        model.se_mode = "batch"
        batch_alone = torch.cat([model(x[i : i + 1]) for i in range(6)])
        batch_together = model(x)
    # at batch 1 the two modes are the same function
    assert torch.allclose(batch_alone, alone, atol=1e-5)
    assert not torch.allclose(batch_together, together, atol=1e-4)


def test_checkpoint_round_trip_and_load_model(tiny_checkpoint):
    import corese_edge

    ckpt = load_checkpoint(tiny_checkpoint)
    model = corese_edge.load_model(tiny_checkpoint)
    assert not model.training
    assert model.class_names == ckpt.class_names
    assert model.preprocessing.size == 32 and model.preprocessing.mean == (0.5, 0.5, 0.5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), ckpt.build_model()(x))
    raw = torch.load(tiny_checkpoint, weights_only=True)
    assert raw["schema"] == "corese-edge/checkpoint/1"


def test_bad_checkpoints_get_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a zip file")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a corese-edge checkpoint"):
        load_checkpoint(plain)
    seed = tmp_path / "seed.pt"
    torch.save({"epoch": 1, "model_state": {"a": torch.zeros(1)}}, seed)
    with pytest.raises(CheckpointError, match="import-seed"):
        load_checkpoint(seed)


def test_import_corese_edge_does_not_import_torch():
    code = "import sys, corese_edge; assert 'torch' not in sys.modules, 'torch imported'; print(corese_edge.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    code = "import sys, corese_edge; corese_edge.load_model; assert 'torch' in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_pretrained_from_local_state_dict(tmp_path, lite_checkpoint):
    model = CoResSE("coresse-lite", 7)
    apply_pretrained(model, str(lite_checkpoint))
    ref = load_checkpoint(lite_checkpoint).state_dict
    assert torch.equal(model.state_dict()["resnet.conv1.weight"], ref["resnet.conv1.weight"])
    with pytest.raises(UserError, match="imagenet"):
        apply_pretrained(model, str(tmp_path / "nope.pt"))


def test_imagenet_weights_offline_without_cache_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code = (
        "from corese_edge.model import CoResSE\n"
        "from corese_edge.model.pretrained import apply_pretrained\n"
        "from corese_edge.errors import UserError\n"
        "try:\n    apply_pretrained(CoResSE('coresse-lite', 7), 'imagenet')\nexcept UserError as e:\n    print('USERERROR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    line = [l for l in out.stdout.splitlines() if l.startswith("USERERROR")]
    assert line, out.stdout + out.stderr
    assert "--pretrained none" in line[0] and "--pretrained PATH" in line[0] and "resnet18.tv_in1k" in line[0]
