"""Finding the YuNet model file: explicit path, $CORESE_EDGE_FACE_MODEL, the cache, a checked download.

The network is never touched: ``urllib.request.urlopen`` is replaced by fakes that behave as the
documented function does (https://docs.python.org/3/library/urllib.request.html#urllib.request.urlopen):
offline it raises ``urllib.error.URLError`` (an ``OSError`` subclass) with a ``reason``; online
it returns a response usable as a context manager whose ``read()`` gives the body.
"""
from __future__ import annotations

import io
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from corese_edge.cli import cli
from corese_edge.runtime import faces
from corese_edge.runtime.faces import (
    FACE_MODEL_ENV,
    FACE_MODEL_SHA256,
    MissingFaceModel,
    face_model_cache_path,
    resolve_face_model,
)
from tests.conftest import SHARED_FACE_MODEL

pytestmark = pytest.mark.skipif(not SHARED_FACE_MODEL.is_file(), reason="the shared YuNet model file is not present")


def offline(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


class Serving:
    """urlopen that serves ``body`` and counts the calls."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.calls = 0

    def __call__(self, url, timeout=None):
        self.calls += 1
        assert timeout is not None and timeout <= 30  # an offline machine must fail fast, not hang
        return io.BytesIO(self.body)  # BytesIO is a context manager with read(), as the response is


@pytest.fixture
def no_model(monkeypatch, tmp_path):
    """No env variable, an empty cache in tmp_path, and no network."""
    monkeypatch.delenv(FACE_MODEL_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return tmp_path / "cache" / "corese-edge" / faces.FACE_MODEL_NAME


def test_cache_path_follows_xdg_cache_home(no_model):
    assert face_model_cache_path() == no_model


def test_explicit_path_and_env_variable_are_used_and_checked(monkeypatch, tmp_path):
    assert resolve_face_model(SHARED_FACE_MODEL) == SHARED_FACE_MODEL
    monkeypatch.setenv(FACE_MODEL_ENV, str(SHARED_FACE_MODEL))
    assert resolve_face_model() == SHARED_FACE_MODEL
    with pytest.raises(MissingFaceModel, match="face model not found: .*nope.onnx"):
        resolve_face_model(tmp_path / "nope.onnx")


def test_missing_model_offline_is_one_line_naming_the_cache(no_model):
    with pytest.raises(MissingFaceModel) as err:
        resolve_face_model()
    message = str(err.value)
    assert "\n" not in message
    assert str(no_model) in message and "--face-model" in message and "download failed" in message
    assert not no_model.exists()
    with pytest.raises(MissingFaceModel, match=str(no_model)):
        resolve_face_model(download=False)


def test_missing_model_offline_in_the_cli(no_model, tiny_onnx, astronaut_png):
    result = CliRunner().invoke(cli, ["predict", str(astronaut_png), "--model", str(tiny_onnx), "--faces"])
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: ") and str(no_model) in line


@pytest.mark.parametrize("where", ["path", "env"])
def test_wrong_file_is_one_line(monkeypatch, tmp_path, where):
    bad = tmp_path / "yunet.onnx"
    bad.write_bytes(SHARED_FACE_MODEL.read_bytes()[:-1] + b"\0")  # one byte changed
    if where == "env":
        monkeypatch.setenv(FACE_MODEL_ENV, str(bad))
    with pytest.raises(MissingFaceModel) as err:
        resolve_face_model(bad if where == "path" else None)
    assert "\n" not in str(err.value) and str(bad) in str(err.value) and "sha256" in str(err.value)


def test_download_lands_in_the_cache_checked_and_is_reused(no_model, monkeypatch):
    serve = Serving(SHARED_FACE_MODEL.read_bytes())
    monkeypatch.setattr(urllib.request, "urlopen", serve)
    assert resolve_face_model() == no_model
    assert serve.calls == 1 and faces._sha256(no_model) == FACE_MODEL_SHA256
    assert [p.name for p in no_model.parent.iterdir()] == [no_model.name]  # no temporary file left
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert resolve_face_model() == no_model  # the cached copy, no network


def test_a_bad_download_never_reaches_the_cache(no_model, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", Serving(b"<html>rate limited</html>"))
    with pytest.raises(MissingFaceModel, match="sha256") as err:
        resolve_face_model()
    assert "\n" not in str(err.value) and not no_model.exists()


def test_a_damaged_cache_is_replaced_by_a_download(no_model, monkeypatch):
    no_model.parent.mkdir(parents=True)
    no_model.write_bytes(b"truncated")
    with pytest.raises(MissingFaceModel, match="cached copy is damaged and the download failed"):
        resolve_face_model()  # offline: says so, leaves the file for the user to see
    monkeypatch.setattr(urllib.request, "urlopen", Serving(SHARED_FACE_MODEL.read_bytes()))
    assert resolve_face_model() == no_model and faces._sha256(no_model) == FACE_MODEL_SHA256


@pytest.fixture
def astronaut_png(tmp_path):
    import cv2

    data = pytest.importorskip("skimage.data")
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), data.astronaut()[:, :, ::-1])
    return path
