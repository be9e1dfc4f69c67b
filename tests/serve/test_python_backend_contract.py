"""CONTRACT TEST: the Python-backend ``model.py`` files that ``package --triton`` writes, loaded
from the repository and run against ``tests/serve/fake_pb_utils.py``, a fake
``triton_python_backend_utils`` encoding python_backend's documented behaviour (errors included),
with the real corese-edge runner and the real YuNet.  The fake is what lets ``coresse_faces`` run
beside a *native* ``coresse`` (ONNX Runtime backend), which the Triton bundled with nvidia-pytriton
cannot load; the Python-backend flavour also runs in that real Triton in test_server.py."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from corese_edge.runtime import ExpressionClassifier
from corese_edge.serve.triton import package_triton
from tests.conftest import CLASSES, TINY_SIZE
from tests.runtime.test_faces_align import astronaut  # noqa: F401  (session fixture)

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient (dev extra) provides Triton's schema")
from tests.serve import fake_pb_utils as pb  # noqa: E402

pytestmark = pytest.mark.contract
S = TINY_SIZE


@pytest.fixture
def server(tiny_onnx, tmp_path, request):
    backend = getattr(request, "param", "native")
    package_triton(tiny_onnx, tmp_path / "models", backend=backend, max_batch=8)
    triton = pb.FakeTriton(tmp_path / "models")
    yield triton
    triton.close()


def image_request(data) -> list:
    return [pb.Tensor("image", np.array([data], dtype=np.object_))]


def outputs(response) -> dict[str, np.ndarray]:
    assert not response.has_error(), response.error().message()
    return {t.name(): t.as_numpy() for t in response.output_tensors()}


FACE_OUTPUTS = ["boxes", "landmarks", "scores", "probabilities", "labels"]


@pytest.mark.parametrize("server", ["native", "python"], indirect=True)
def test_faces_model_returns_what_predict_faces_gives(server, tiny_onnx, astronaut, tmp_path):  # noqa: F811
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), astronaut[:, :, ::-1])
    [response] = server.infer_many("coresse_faces", [(image_request(photo.read_bytes()), FACE_OUTPUTS)])
    got = outputs(response)
    with ExpressionClassifier.from_artifact(tiny_onnx, faces=True) as clf:
        [expected] = clf.predict_faces(str(photo))
    assert len(expected) == 1
    assert got["boxes"].shape == (1, 4) and got["landmarks"].shape == (1, 5, 2) and got["scores"].shape == (1,)
    np.testing.assert_allclose(got["boxes"][0], expected[0].box, atol=1e-3)
    np.testing.assert_allclose(got["landmarks"][0], expected[0].landmarks, atol=1e-3)
    np.testing.assert_allclose(got["scores"][0], expected[0].score, atol=1e-6)
    np.testing.assert_allclose(got["probabilities"][0], expected[0].probs, atol=1e-4)
    assert [b.decode() for b in got["labels"]] == [expected[0].label]
    if "coresse" in server.execute_calls:  # the Python-backend classifier counts its calls: one BLS request per image
        assert server.execute_calls["coresse"] == [1]


def test_faces_model_bad_requests_then_a_good_one(server, astronaut):  # noqa: F811
    ok, png = cv2.imencode(".png", astronaut[:, :, ::-1])
    good = png.tobytes()
    jpeg = cv2.imencode(".jpg", astronaut[:, :, ::-1])[1].tobytes()
    bad = [
        image_request(b"this is not an image"),
        image_request(jpeg[: len(jpeg) // 2]),  # a cut-off JPEG
        [pb.Tensor("image", np.array([good, good], dtype=np.object_))],  # two images: Triton's shape check
        [pb.Tensor("image", np.zeros((1,), np.float32))],  # wrong dtype: Triton's dtype check
        [],  # no input at all
    ]
    responses = server.infer_many("coresse_faces", [(b, FACE_OUTPUTS) for b in bad] + [(image_request(good), FACE_OUTPUTS)])
    errors = [r.error() for r in responses[:-1]]
    assert all(e is not None for e in errors)
    assert "not a decodable JPEG or PNG" in errors[0].message() and errors[0].code() == pb.TritonError.INVALID_ARG
    assert "truncated JPEG" in errors[1].message()
    assert "unexpected shape" in errors[2].message()
    assert "data-type" in errors[3].message()
    assert "expected 1 inputs" in errors[4].message()
    assert outputs(responses[-1])["boxes"].shape == (1, 4)  # the next good request is answered


def test_faces_model_without_a_face_returns_empty_rows(server):
    blank = cv2.imencode(".png", np.full((120, 160, 3), 128, np.uint8))[1].tobytes()
    got = outputs(server.infer("coresse_faces", image_request(blank), FACE_OUTPUTS))
    assert {k: v.shape for k, v in got.items()} == {"boxes": (0, 4), "landmarks": (0, 5, 2), "scores": (0,),
                                                    "probabilities": (0, len(CLASSES)), "labels": (0,)}


def test_faces_model_reports_a_failed_bls_request(server, astronaut):  # noqa: F811
    server.models["coresse_faces"].classifier = "no_such_model"
    png = cv2.imencode(".png", astronaut[:, :, ::-1])[1].tobytes()
    [response] = server.infer_many("coresse_faces", [(image_request(png), FACE_OUTPUTS)])
    assert response.has_error() and response.error().code() == pb.TritonError.INTERNAL
    assert "no_such_model failed" in response.error().message() and "not found" in response.error().message()


@pytest.mark.parametrize("server", ["python"], indirect=True)
def test_python_coresse_batches_requests_and_matches_the_runner(server, tiny_onnx):
    rng = np.random.default_rng(3)
    batches = [rng.integers(0, 256, (n, S, S, 3), dtype=np.uint8) for n in (2, 1, 5)]
    requests = [([pb.Tensor("frames", b)], ["probabilities"]) for b in batches]
    requests.insert(1, ([pb.Tensor("frames", np.zeros((9, S, S, 3), np.uint8))], ["probabilities"]))  # above max 8
    responses = server.infer_many("coresse", requests)
    assert "batch-size must be <= 8" in responses[1].error().message()
    assert server.execute_calls["coresse"] == [3]  # the three good requests ran in one execute call
    with ExpressionClassifier.from_artifact(tiny_onnx) as clf:
        for b, r in zip(batches, [responses[0], responses[2], responses[3]]):
            probs = outputs(r)["probabilities"]
            assert probs.shape == (len(b), len(CLASSES)) and probs.dtype == np.float32
            np.testing.assert_allclose(probs, np.stack([p.probs for p in clf.predict(list(b))]), atol=1e-5)


@pytest.mark.parametrize("server", ["python"], indirect=True)
def test_python_coresse_checks_what_reaches_execute(server):
    """Triton checks shapes first; the model checks again and answers each request on its own."""
    model = server.models["coresse"]
    good = pb.InferenceRequest(inputs=[pb.Tensor("frames", np.zeros((1, S, S, 3), np.uint8))],
                               requested_output_names=["probabilities"], model_name="coresse")
    wrong = pb.InferenceRequest(inputs=[pb.Tensor("frames", np.zeros((1, S, S), np.uint8))],
                                requested_output_names=["probabilities"], model_name="coresse")
    missing = pb.InferenceRequest(inputs=[], requested_output_names=["probabilities"], model_name="coresse")
    r_good, r_wrong, r_missing = model.execute([good, wrong, missing])
    assert not r_good.has_error() and pb.get_output_tensor_by_name(r_good, "probabilities").as_numpy().shape == (1, len(CLASSES))
    assert r_wrong.error().code() == pb.TritonError.INVALID_ARG and f"[N, {S}, {S}, 3]" in r_wrong.error().message()
    assert "has no input 'frames'" in r_missing.error().message()


def test_python_coresse_refuses_to_load_a_broken_artifact(tiny_onnx, tmp_path):
    package_triton(tiny_onnx, tmp_path / "models", backend="python", faces=False)
    (tmp_path / "models" / "coresse" / "1" / "model.onnx").write_bytes(b"broken")
    with pytest.raises(pb.TritonModelException, match="^coresse: "):
        pb.FakeTriton(tmp_path / "models")


def test_the_fake_keeps_the_documented_rules():
    """The fake itself: what python_backend documents, so the tests above lean on real rules."""
    with pytest.raises(pb.TritonModelException, match="empty string"):
        pb.Tensor("", np.zeros(1, np.float32))
    with pytest.raises(pb.TritonModelException, match="no Triton data type"):
        pb.Tensor("x", np.array(["a"]))  # numpy unicode has no Triton type; BYTES are np.object_
    t = pb.Tensor("s", np.array([b"ab", "c"], dtype=np.object_))
    assert list(t.as_numpy()) == [b"ab", b"c"]
    with pytest.raises(TypeError):
        pb.InferenceRequest(inputs=None, requested_output_names=[], model_name="m")
    assert pb.TritonError("x").code() == pb.TritonError.INTERNAL
