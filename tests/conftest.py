"""Shared fixtures: real files on disk, tiny models.

* ``tiny_checkpoint``: an untrained coresse-lite checkpoint at 32 px (fast; for plumbing tests).
* ``tiny_onnx``: its FP32 ONNX export with corese-edge metadata.
* ``synthetic_data``: a small synthetic expression set in the Kaggle RAF-DB layout.
* ``trained_run``: a real training run of the tiny ``coresse-test`` variant at 32 px on
  ``synthetic_data`` (session scoped, shared by the train, export, runtime and evaluate tests), long
  enough to discriminate (89 % SWA test accuracy against 14 % chance). ``trained_run.swa_path`` etc.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

#: The YuNet face model kept outside the project (``../shared/models`` from the repository root),
#: so the face tests and training's template detection run the real detector offline.
SHARED_FACE_MODEL = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "face_detection_yunet_2023mar.onnx"


@pytest.fixture(scope="session", autouse=True)
def shared_face_model():
    """Point ``$CORESE_EDGE_FACE_MODEL`` at the shared model file for the whole session (when it
    exists), so no test downloads it; tests that need it absent monkeypatch the variable away."""
    if not SHARED_FACE_MODEL.is_file():
        yield None
        return
    mp = pytest.MonkeyPatch()
    mp.setenv("CORESE_EDGE_FACE_MODEL", str(SHARED_FACE_MODEL))
    yield SHARED_FACE_MODEL
    mp.undo()


@pytest.fixture(autouse=True)
def signal_stack_stays_valid():
    """After every test the main thread's alternate signal stack still lies in mapped memory.

    OpenVINO's CPU plugin leaves it pointing at freed memory when cores are freed out of order, and
    the next Python signal handler then kills the whole session with SIGSEGV, tests later (it took
    the CI run down at the first subprocess exit after torch's DataLoader had set its SIGCHLD
    handler; corese_edge/sigstack.py).  corese-edge code must never leave it so; tests use
    ``shared_core()`` rather than cores of their own for the same reason."""
    yield
    from corese_edge.sigstack import repair_signal_stack, signal_stack_is_valid

    broken = not signal_stack_is_valid()
    if broken:
        repair_signal_stack()  # so that this test fails, not the whole session later
    assert not broken, (
        "this test left the main thread's alternate signal stack on unmapped memory (OpenVINO cores freed "
        "out of order without corese_edge.sigstack.repair_signal_stack); any later signal would crash the run")


TINY_SIZE = 32
CLASSES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    import torch

    from corese_edge.model import CoResSE
    from corese_edge.model.checkpoint import Checkpoint
    from corese_edge.preprocessing import Preprocessing

    torch.manual_seed(0)
    model = CoResSE("coresse-lite", len(CLASSES))
    ckpt = Checkpoint(
        path=None,
        variant="coresse-lite",
        num_classes=len(CLASSES),
        se_mode="sample",
        class_names=list(CLASSES),
        preprocessing=Preprocessing(size=TINY_SIZE),
        state_dict=model.state_dict(),
        kind="test",
    )
    return ckpt.save(tmp_path_factory.mktemp("tiny") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint, tmp_path_factory) -> Path:
    from corese_edge.export.onnx_fp32 import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("tiny_onnx") / "model.onnx")


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    from corese_edge.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("synthetic") / "faces", train_per_class=40, test_per_class=12, size=64, seed=0)


#: how ``trained_run`` trains (tests that check what the run recorded compare against these)
TRAINED_MODEL = "coresse-test"
TRAINED_SIZE = 32
TRAINED_EPOCHS = 30
#: SWA averages the epochs from int(0.75 * epochs) (0-based) on: 30 - 22 = 8 models
TRAINED_SWA_MODELS = TRAINED_EPOCHS - int(0.75 * TRAINED_EPOCHS)


@pytest.fixture(scope="session")
def trained_run(synthetic_data, tmp_path_factory):
    """A real training run that discriminates: coresse-test, 32 px, 30 epochs, SWA over the last quarter.

    No Mixup/CutMix (the set is small and the cues are clear).  30 epochs of the tiny variant took
    46 s on 2 cores where 4 epochs of coresse-lite at 48 px (the former fixture, 18 %) took longer;
    the SWA model reaches 89 % test accuracy on the 84 test images (best-on-validation 90 %,
    chance 14 %), so predictions, confusion matrices and drift are those of a working classifier.
    """
    from corese_edge.train import TrainConfig, train

    cfg = TrainConfig(
        data=str(synthetic_data),
        model=TRAINED_MODEL,
        img_size=TRAINED_SIZE,
        epochs=TRAINED_EPOCHS,
        batch_size=16,
        lr=3e-3,
        warmup_epochs=1,
        mixup=0.0,
        cutmix=0.0,
        pretrained="none",
        workers=0,
        seed=0,
        out=str(tmp_path_factory.mktemp("runs") / "trained"),
        progress=False,
        face_template_images=48,  # the template's own tests use more; 48 keeps this shared fixture fast
    )
    return train(cfg)
