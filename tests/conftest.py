"""Shared fixtures: real files on disk, tiny models.

* ``tiny_checkpoint``: an untrained ``coresse-test`` checkpoint at 32 px (fast; for plumbing tests).
* ``tiny_onnx``: its FP32 ONNX export with corese-edge metadata.
* ``lite_checkpoint`` / ``lite_onnx``: the same for ``coresse-lite``, for tests about its structure.
* ``synthetic_data``: a small synthetic expression set in the Kaggle RAF-DB layout.
* ``trained_run``: a real training run of the tiny ``coresse-test`` variant at 32 px on
  ``synthetic_data`` (session scoped, shared by the train, export, runtime and evaluate tests), long
  enough to discriminate (89 % SWA test accuracy against 14 % chance). ``trained_run.swa_path`` etc.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# README runs the suite as ``pytest -n 2``: each xdist worker gets its share of the cores, so two
# workers on two cores do not oversubscribe them (torch reads this once, at import); serially, 2
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)) if _workers else "2")
# The suite starts about a hundred Python processes (CLI commands, torchrun ranks, loader workers).
# With PYTHONDONTWRITEBYTECODE set (as on these development machines) and a venv installed without byte-code
# (.ci/run's pip --no-compile), each of them would compile torch's sources again: an import of
# torch + the trainer took 4.5 s instead of 2.8 s.  Let this run and its children write .pyc files.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False


def made_once(tmp_path_factory, name: str, make, load):
    """A session fixture's product made once per test run, even when pytest-xdist runs the suite
    in several worker processes (each has its own session, so each would make its own copy).

    ``make(dir)`` builds the product in ``dir`` and returns it; ``load(dir)`` rebuilds the same
    object from what ``make`` left there.  Without xdist this is just ``make``.  With it, the first
    worker to take the lock makes the product in the run's shared base directory and the others
    load it (the pattern of pytest-xdist's docs, "Making session-scoped fixtures execute only once").
    A product whose maker failed is made again by the next worker, so the failure shows up in each.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return make(tmp_path_factory.mktemp(name))
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent / f"shared-{name}"
    done = root / ".made"
    with FileLock(str(root) + ".lock"):
        if done.is_file():
            return load(root / "product")
        if root.exists():
            import shutil

            shutil.rmtree(root)  # a maker that failed part way
        root.mkdir()
        product = make(root / "product")
        done.touch()
        return product


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
#: the variant of ``tiny_checkpoint``: timm's test backbones (test_resnet, test_convnext) in the real
#: fusion, SE and head, 0.7 M parameters, so the pipeline tests run the real graph structure cheaply
TINY_VARIANT = "coresse-test"
#: the variant of ``lite_checkpoint``, for the tests that count coresse-lite's own layers and ops
LITE_VARIANT = "coresse-lite"
CLASSES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")


def _untrained_checkpoint(variant: str, path: Path) -> Path:
    import torch

    from corese_edge.model import CoResSE
    from corese_edge.model.checkpoint import Checkpoint
    from corese_edge.preprocessing import Preprocessing

    torch.manual_seed(0)
    model = CoResSE(variant, len(CLASSES))
    ckpt = Checkpoint(
        path=None,
        variant=variant,
        num_classes=len(CLASSES),
        se_mode="sample",
        class_names=list(CLASSES),
        preprocessing=Preprocessing(size=TINY_SIZE),
        state_dict=model.state_dict(),
        kind="test",
    )
    return ckpt.save(path)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained coresse-test checkpoint at 32 px (plumbing, pipeline and runtime tests)."""
    return _untrained_checkpoint(TINY_VARIANT, tmp_path_factory.mktemp("tiny") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint, tmp_path_factory) -> Path:
    from corese_edge.export.onnx_fp32 import export_onnx

    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("tiny_onnx") / "model.onnx")


@pytest.fixture(scope="session")
def lite_checkpoint(tmp_path_factory) -> Path:
    """An untrained coresse-lite checkpoint at 32 px (the tests that count its layers, residual Adds and ops)."""
    return _untrained_checkpoint(LITE_VARIANT, tmp_path_factory.mktemp("lite") / "lite.pt")


@pytest.fixture(scope="session")
def lite_onnx(lite_checkpoint, tmp_path_factory) -> Path:
    from corese_edge.export.onnx_fp32 import export_onnx

    return export_onnx(lite_checkpoint, tmp_path_factory.mktemp("lite_onnx") / "model.onnx")


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    from corese_edge.data.synthetic import generate

    def make(root: Path) -> Path:
        return generate(root / "faces", train_per_class=40, test_per_class=12, size=64, seed=0)

    return made_once(tmp_path_factory, "synthetic", make, lambda root: root / "faces")


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
    import json

    from corese_edge.train import TrainResult, train

    def make(root: Path):
        root.mkdir(parents=True, exist_ok=True)
        result = train(_trained_config(synthetic_data, root / "trained"))
        paths = {"out_dir": result.out_dir, "swa_path": result.swa_path, "best_path": result.best_path,
                 "last_path": result.last_path}
        (root / "result.json").write_text(json.dumps({k: str(v) for k, v in paths.items()}))
        return load(root)  # every worker sees the report as report.json holds it

    def load(root: Path):
        paths = {k: Path(v) for k, v in json.loads((root / "result.json").read_text()).items()}
        return TrainResult(**paths, report=json.loads((paths["out_dir"] / "report.json").read_text()))

    return made_once(tmp_path_factory, "runs", make, load)


def _trained_config(synthetic_data, out: Path):
    from corese_edge.train import TrainConfig

    return TrainConfig(
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
        out=str(out),
        progress=False,
        face_template_images=48,  # the template's own tests use more; 48 keeps this shared fixture fast
    )


@pytest.hookimpl(tryfirst=True)  # before xdist's own choice of scheduler
def pytest_xdist_make_scheduler(config, log):
    """How README's ``pytest -n 2`` shares the tests between its workers (xdist's default ``load``
    mode only; an explicit ``--dist`` is left alone).

    Each test file is one unit, so a module-scoped fixture is made once, on the worker that runs
    the file.  The files that use ``trained_run`` form one unit together: the run is trained once,
    and no worker sits waiting for the other's training (``made_once`` alone would make it wait).
    The controller collects nothing, so those files are found by the fixture's name in their text.
    (xdist's ``loadgroup`` would say this with marks, but it renames items through
    ``item._nodeid``, which pytest 9.2 no longer reads.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    root = Path(__file__).resolve().parents[1]
    trained = {p.relative_to(root).as_posix() for p in (root / "tests").rglob("test_*.py")
               if "trained_run" in p.read_text(encoding="utf-8")}

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "trained_run" if path in trained else path

    return ByFile(config, log)
