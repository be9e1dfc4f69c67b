"""``corese-edge serve`` against a REAL Triton Inference Server: the build bundled with
nvidia-pytriton (dev extra; Python backend only, so ``coresse`` is corese-edge's runner inside
Triton), started as a user starts it, on loopback, and driven by stock clients (tritonclient over
HTTP and gRPC, curl with KServe v2 JSON) and by :class:`corese_edge.client.ExpressionClient`.

Every load here is bounded in count and time.  What cannot run here: Triton's native ONNX Runtime,
OpenVINO and TensorRT backends (``package --triton``'s native repositories are checked against
Triton's schema in test_triton_repository.py and with a fake in test_python_backend_contract.py).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from corese_edge.errors import MissingExtra, UserError
from corese_edge.runtime import ExpressionClassifier, Preprocessor
from corese_edge.runtime.classifier import softmax
from corese_edge.serve import server as server_mod
from tests.conftest import TINY_SIZE
from tests.runtime.test_faces_align import astronaut  # noqa: F401  (session fixture)
from tests.serve.serve_process import ServeProcess, free_ports
from tests.test_cli_errors import assert_one_line_error, run_cli

try:  # tritonclient without its http / grpc extra raises RuntimeError, not ImportError
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException
except (ImportError, RuntimeError) as exc:
    pytest.skip(f"tritonclient[http,grpc] (serve extra) is not installed: {exc}", allow_module_level=True)
try:
    server_mod.find_tritonserver()
except MissingExtra as exc:  # .ci/run checks that CI has one, so this never skips there
    pytest.skip(f"no Triton server to test against: {exc}", allow_module_level=True)

pytestmark = pytest.mark.slow
S = TINY_SIZE
MAX_BATCH = 8


@pytest.fixture(scope="module")
def served(int8_onnx):
    # a proxy that answers nothing: serve's readiness probe of its own server must not go through it
    dead_proxy = f"http://127.0.0.1:{free_ports(1)[0]}"
    env = dict(os.environ, http_proxy=dead_proxy, HTTP_PROXY=dead_proxy)
    proc = ServeProcess(int8_onnx, "--max-batch", str(MAX_BATCH), "--max-queue-delay-us", "2000", env=env).wait_ready(120)
    yield proc
    assert proc.stop() == 0, "\n".join(proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def test_images(synthetic_data) -> list[Path]:
    """The synthetic set's test images (as the demo makes them), two per class."""
    files = sorted((synthetic_data / "DATASET" / "test").glob("*/*.jpg"))
    picked = [f for c in sorted({f.parent for f in files}) for f in sorted(c.glob("*.jpg"))[:2]]
    assert len(picked) == 14
    return picked


@pytest.fixture(scope="module")
def reference(int8_onnx):
    with ExpressionClassifier.from_artifact(int8_onnx) as clf:
        yield clf


def frames_of(files, prep) -> np.ndarray:
    """Frames as a client prepares them for ``coresse``: decoded, resized with the model's
    preprocessing ``prep``, in its channel order (uint8 NHWC; the model normalises)."""
    from corese_edge.runtime.preprocess import as_frames

    return Preprocessor(prep, np.dtype(np.uint8)).from_frames(as_frames([str(f) for f in files]))


def expected_probs(reference, frames: np.ndarray) -> np.ndarray:
    """The in-process runner's probabilities of ``frames`` (normalised here when the artifact takes
    the float input, as the served model normalises them)."""
    x = frames if np.dtype(reference.input.dtype) == np.uint8 else Preprocessor(reference.preprocessing).normalize(frames)
    return softmax(reference.runner.infer({reference.input.name: x})[reference.output_name])


def http_infer(url: str, frames: np.ndarray, dtype: str = "UINT8") -> np.ndarray:
    client = httpclient.InferenceServerClient(url)
    try:
        inp = httpclient.InferInput("frames", list(frames.shape), dtype)
        inp.set_data_from_numpy(frames, binary_data=True)
        return client.infer("coresse", [inp], outputs=[httpclient.InferRequestedOutput("probabilities")]).as_numpy("probabilities")
    finally:
        client.close()


# ----------------------------------------------------------------------------- serving and listening
def _address(hexaddr: str) -> str:
    """/proc/net/tcp{,6}'s local address (32-bit words in host byte order) as an IP string; an
    IPv4-mapped IPv6 address (``::ffff:127.0.0.1``, as gRPC binds) as its IPv4 form."""
    raw = b"".join(bytes.fromhex(hexaddr[i:i + 8])[::-1] for i in range(0, len(hexaddr), 8))
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if raw[:12] == b"\0" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return socket.inet_ntop(socket.AF_INET6, raw)


def listeners(port: int) -> set[str]:
    """Local addresses LISTENing on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            addr, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:
                found.add(_address(addr))
    return found


def connections_to(port: int) -> int:
    """ESTABLISHED TCP connections whose remote end is ``port`` (this machine's clients of it)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        n += sum(1 for row in rows if row.split()[3] == "01" and int(row.split()[2].rsplit(":", 1)[1], 16) == port)
    return n


def test_ready_banner_and_only_loopback_listens(served):
    banner = "\n".join(served.stdout)
    assert "coresse, coresse_faces" in banner and "python backend" in banner
    assert f"http://127.0.0.1:{served.http}" in banner and f"127.0.0.1:{served.grpc}" in banner
    assert f"http://127.0.0.1:{served.metrics}/metrics" in banner
    assert f"frames uint8 [N, {S}, {S}, 3] -> probabilities float32 [N, 7], max batch {MAX_BATCH}" in banner
    cores = os.cpu_count() or 1
    assert (f"2 instances x {max(1, cores // 2)} thread" if cores >= 2 else "1 instance x 1 thread") in banner
    for port in (served.http, served.grpc, served.metrics):
        assert listeners(port) == {"127.0.0.1"}, (port, listeners(port))  # loopback only: no 0.0.0.0, no ::


def test_the_python_backend_stubs_run_this_interpreters_libpython(served):
    """Each model's stub process maps the libpython of the interpreter corese-edge runs on (whose
    site-packages it imports), not another patch release the system has under the same name."""
    import re
    import sysconfig

    repository = re.search(r" from (\S+) \(", "\n".join(served.stdout)).group(1)
    stubs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        if "triton_python_backend_stub" in cmdline and repository in cmdline:
            stubs.append({Path(line.split()[-1]).resolve() for line in maps.splitlines() if "libpython3" in line})
    assert len(stubs) == 4, stubs  # coresse and coresse_faces, two instances each (serve's default on a CPU)
    ours = (Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("INSTSONAME")).resolve()
    assert all(libs == {ours} for libs in stubs), (ours, stubs)


def test_frames_over_http_and_grpc_match_the_runner_and_predict(served, test_images, reference, tmp_path):
    frames = frames_of(test_images, reference.preprocessing)
    want = expected_probs(reference, frames)
    got_http = http_infer(served.http_url, frames[:MAX_BATCH])
    client = grpcclient.InferenceServerClient(served.grpc_url)
    inp = grpcclient.InferInput("frames", list(frames[MAX_BATCH:].shape), "UINT8")
    inp.set_data_from_numpy(frames[MAX_BATCH:])
    got_grpc = client.infer("coresse", [inp]).as_numpy("probabilities")
    client.close()
    got = np.concatenate([got_http, got_grpc])
    assert got.shape == (len(test_images), 7) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    res = run_cli("predict", *map(str, test_images), "--model", str(reference.runner.path), "--json")
    assert res.returncode == 0, res.stderr
    labels = [p["label"] for p in json.loads(res.stdout)["predictions"]]
    assert [reference.class_names[i] for i in got.argmax(axis=1)] == labels


def test_curl_with_kserve_v2_json(served, test_images, reference):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    frames = frames_of(test_images[:2], reference.preprocessing)
    body = {"inputs": [{"name": "frames", "shape": list(frames.shape), "datatype": "UINT8",
                        "data": frames.reshape(-1).tolist()}]}
    res = subprocess.run(["curl", "-sS", "-X", "POST", f"http://{served.http_url}/v2/models/coresse/infer",
                          "-H", "Content-Type: application/json", "--data-binary", "@-"],
                         input=json.dumps(body), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    [out] = json.loads(res.stdout)["outputs"]
    assert out["name"] == "probabilities" and out["datatype"] == "FP32" and out["shape"] == [2, 7]
    np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(2, 7), expected_probs(reference, frames), atol=1e-4)


def test_expression_client_gives_the_classifiers_predictions(served, test_images, reference):
    from corese_edge.client import ExpressionClient

    want = reference.predict([str(f) for f in test_images])
    for url in (f"http://{served.http_url}", f"grpc://{served.grpc_url}"):
        with ExpressionClient(url, batch_size=4) as client:
            assert client.class_names == reference.class_names and client.preprocessing == reference.preprocessing
            got = client.predict([str(f) for f in test_images])
            assert [p.label for p in got] == [p.label for p in want], url
            np.testing.assert_allclose(np.stack([p.probs for p in got]), np.stack([p.probs for p in want]), atol=1e-4)
            # BGR frames (OpenCV) are turned into the model's order client-side
            bgr = cv2.imread(str(test_images[0]))
            [p] = client.predict(bgr, color_order="bgr")
            np.testing.assert_allclose(p.probs, want[0].probs, atol=1e-4)


def test_faces_model_returns_what_predict_faces_json_gives(served, int8_onnx, astronaut, tmp_path):  # noqa: F811
    from corese_edge.client import ExpressionClient

    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), astronaut[:, :, ::-1])
    res = run_cli("predict", str(photo), "--model", str(int8_onnx), "--faces", "--json")
    assert res.returncode == 0, res.stderr
    [expected] = json.loads(res.stdout)["predictions"]
    client = httpclient.InferenceServerClient(served.http_url)
    inp = httpclient.InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(np.array([photo.read_bytes()], dtype=np.object_), binary_data=True)
    result = client.infer("coresse_faces", [inp])
    client.close()
    assert result.as_numpy("boxes").shape == (1, 4) and result.as_numpy("landmarks").shape == (1, 5, 2)
    np.testing.assert_allclose(result.as_numpy("boxes")[0], expected["box"], atol=0.01)
    np.testing.assert_allclose(result.as_numpy("landmarks")[0], expected["landmarks"], atol=0.01)
    np.testing.assert_allclose(result.as_numpy("scores")[0], expected["face_score"], atol=1e-4)
    assert [b.decode() for b in result.as_numpy("labels")] == [expected["label"]]
    np.testing.assert_allclose(result.as_numpy("probabilities")[0], list(expected["probs"].values()), atol=1e-4)
    with ExpressionClient(f"http://{served.http_url}") as ec:
        [[face]] = ec.predict_faces(str(photo))
        [[same]] = ec.predict_faces(astronaut)  # a frame is PNG-encoded client-side, losslessly
    assert face.label == expected["label"] and face.face == 0
    np.testing.assert_allclose(face.box, expected["box"], atol=0.01)
    np.testing.assert_allclose(same.probs, face.probs, atol=1e-6)
    # an image without a face: zero rows, not an error
    with ExpressionClient(f"http://{served.http_url}") as ec:
        assert ec.predict_faces(np.full((240, 320, 3), 127, np.uint8)) == [[]]


# ----------------------------------------------------------------------------- bad requests
def raw_post(url: str, body: bytes, headers: dict[str, str], model: str = "coresse") -> tuple[int, str]:
    import http.client

    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("POST", f"/v2/models/{model}/infer", body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


def binary_request(name: str, shape, datatype: str, payload: bytes) -> tuple[bytes, dict[str, str]]:
    header = json.dumps({"inputs": [{"name": name, "shape": list(shape), "datatype": datatype,
                                     "parameters": {"binary_data_size": len(payload)}}]}).encode()
    return header + payload, {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}


def bad_requests(served, frames: np.ndarray) -> dict[str, callable]:
    """name -> a callable sending that bad request and returning the error text the server gave."""

    def via_client(model, name, array, dtype):
        def send():
            client = httpclient.InferenceServerClient(served.http_url)
            try:
                inp = httpclient.InferInput(name, list(array.shape), dtype)
                inp.set_data_from_numpy(array, binary_data=True)
                client.infer(model, [inp])
            except InferenceServerException as exc:
                return exc.message()
            finally:
                client.close()
            return None
        return send

    def empty():
        status, text = raw_post(served.http_url, b'{"inputs": []}', {"Content-Type": "application/json"})
        return text if status >= 400 else None

    def oversized():
        # 64 MiB declared and sent for a tensor of 4 frames: far more bytes than the shape holds
        body, headers = binary_request("frames", (4, S, S, 3), "UINT8", bytes(64 * 2**20))
        status, text = raw_post(served.http_url, body, headers)
        return text if status >= 400 else None

    return {
        "wrong dtype": (via_client("coresse", "frames", frames.astype(np.float32), "FP32"), "data-type is 'FP32', but model 'coresse' expects 'UINT8'"),
        "wrong shape": (via_client("coresse", "frames", np.zeros((2, S + 1, S, 3), np.uint8), "UINT8"), f"Expected [-1,{S},{S},3], got [2,{S + 1},{S},3]"),
        "batch above the maximum": (via_client("coresse", "frames", np.zeros((MAX_BATCH + 1, S, S, 3), np.uint8), "UINT8"), f"batch-size must be <= {MAX_BATCH}"),
        "corrupt image": (via_client("coresse_faces", "image", np.array([b"\x89PNG\r\n\x1a\n broken"], dtype=np.object_), "BYTES"), "'image' is not a decodable JPEG or PNG"),
        "empty request": (empty, "missing required input(s) ['frames']"),
        "oversized body": (oversized, f"input byte size mismatch for input 'frames' for model 'coresse'. Expected {4 * S * S * 3}, got {64 * 2**20}"),
    }


def test_each_bad_request_is_named_and_the_next_good_one_is_answered(served, test_images, reference):
    frames = frames_of(test_images[:4], reference.preprocessing)
    want = expected_probs(reference, frames)
    for name, (send, fragment) in bad_requests(served, frames).items():
        message = send()
        assert message is not None, f"{name}: the server accepted it"
        assert fragment in message, (name, message)
        np.testing.assert_allclose(http_infer(served.http_url, frames), want, atol=1e-4, err_msg=f"after {name}")


def test_good_requests_beside_bad_ones_all_succeed_and_are_batched(served, test_images, reference):
    frames = frames_of(test_images, reference.preprocessing)
    want = expected_probs(reference, frames)
    bad = [send for send, _ in bad_requests(served, frames[:4]).values() if send.__name__ != "oversized"]
    stats = httpclient.InferenceServerClient(served.http_url)
    before = stats.get_inference_statistics("coresse")["model_stats"][0]["execution_count"]

    def good(i: int):
        lo = i % (len(frames) - 3)
        return lo, http_infer(served.http_url, frames[lo:lo + 3])

    jobs = []
    with ThreadPoolExecutor(max_workers=12) as pool:  # bounded: 96 good and 20 bad requests
        for i in range(96):
            jobs.append(("good", pool.submit(good, i)))
            if i % 5 == 0:
                jobs.append(("bad", pool.submit(bad[(i // 5) % len(bad)])))
        for kind, job in jobs:
            if kind == "good":
                lo, got = job.result(timeout=120)
                np.testing.assert_allclose(got, want[lo:lo + 3], atol=1e-4)
            else:
                assert job.result(timeout=120) is not None
    model = stats.get_inference_statistics("coresse")["model_stats"][0]
    stats.close()
    executions = int(model["execution_count"]) - int(before)
    assert 0 < executions < 96, executions  # the dynamic batcher put requests together
    assert any(int(b["batch_size"]) > 3 for b in model["batch_stats"]), model["batch_stats"]


# ----------------------------------------------------------------------------- lifecycle
def test_sigterm_answers_every_request_in_flight(int8_onnx, test_images, reference):
    # a long queue delay keeps the requests waiting in Triton's batcher when SIGTERM arrives
    proc = ServeProcess(int8_onnx, "--no-faces", "--max-batch", str(MAX_BATCH), "--max-queue-delay-us", "1500000").wait_ready()
    frames = frames_of(test_images[:4], reference.preprocessing)
    want = expected_probs(reference, frames)
    client = httpclient.InferenceServerClient(proc.http_url, concurrency=6)
    try:
        pending = []
        for i in range(6):
            inp = httpclient.InferInput("frames", [1, S, S, 3], "UINT8")
            inp.set_data_from_numpy(frames[i % 4:i % 4 + 1], binary_data=True)
            pending.append((i % 4, client.async_infer("coresse", [inp])))
        time.sleep(0.4)
        proc.proc.send_signal(signal.SIGTERM)
        for i, req in pending:
            np.testing.assert_allclose(req.get_result(timeout=60).as_numpy("probabilities")[0], want[i], atol=1e-4)
    finally:
        client.close()
    assert proc.proc.wait(timeout=60) == 0, "\n".join(proc.stdout + proc.stderr)
    with socket.socket() as s:  # and it is gone
        assert s.connect_ex(("127.0.0.1", proc.http)) != 0


def test_an_idle_client_connection_delays_the_stop_but_it_is_still_clean(int8_onnx, test_images, reference, tmp_path):
    """Triton waits up to the exit timeout for open connections, then exits 1 although nothing was
    in flight; serve reads that from Triton's log, says so, exits 0 and removes its workspace."""
    import http.client

    proc = ServeProcess(int8_onnx, "--no-faces", "--exit-timeout", "2", env=dict(os.environ, TMPDIR=str(tmp_path))).wait_ready()
    assert len(list(tmp_path.glob("corese-serve-*"))) == 1  # the workspace, while it serves
    frames = frames_of(test_images[:1], reference.preprocessing)
    body, headers = binary_request("frames", frames.shape, "UINT8", frames.tobytes())
    idle = http.client.HTTPConnection("127.0.0.1", proc.http, timeout=30)  # keep-alive, never closed in time
    try:
        idle.request("POST", "/v2/models/coresse/infer", body=body, headers=headers)
        response = idle.getresponse()
        assert response.status == 200, response.read()
        response.read()
        started = time.monotonic()
        assert proc.stop(timeout_s=60) == 0, "\n".join(proc.stdout + proc.stderr)
        assert time.monotonic() - started >= 1.5  # it did wait for the connection
    finally:
        idle.close()
    assert any("every request was answered; idle client connections kept Triton waiting" in line
               for line in proc.stderr), proc.stderr
    assert not list(tmp_path.glob("corese-serve-*"))  # a clean stop leaves nothing behind


def test_answered_everything_reads_tritons_shutdown_log():
    clean = ('Signal (15) received.\n'
             'I1204 04:10:28.963282 28302 http_server.cc:248] "Timeout 1: Found 1 HTTP service connections"\n'
             'I1204 04:10:29.964759 28302 server.cc:305] "Waiting for in-flight requests to complete."\n'
             'I1204 04:10:29.964818 28302 server.cc:321] "Timeout 0: Found 0 model versions that have in-flight inferences"\n'
             'E1204 04:10:29.965139 28302 main.cc:535] "failed to stop server: Internal - Exit timeout expired. Exiting immediately."\n')
    assert server_mod.answered_everything(clean)
    cut = clean.replace("Found 0 model versions", "Found 1 model versions")
    assert not server_mod.answered_everything(cut)
    # a count from before the signal says nothing about the stop
    assert not server_mod.answered_everything('I1 x.cc:1] "Found 0 model versions that have in-flight inferences"\n'
                                              "Signal (15) received.\n")


def test_a_second_server_on_a_busy_port_is_one_line(served, int8_onnx):
    res = run_cli("serve", str(int8_onnx), "--http-port", str(served.http), "--grpc-port", str(free_ports(1)[0]),
                  "--metrics-port", str(free_ports(1)[0]))
    assert_one_line_error(res, f"port {served.http} on 127.0.0.1 is already in use", "--http-port")
    res = run_cli("serve", str(int8_onnx), "--http-port", "9100", "--grpc-port", "9100")
    assert_one_line_error(res, "--grpc-port 9100 is also the http port")


def test_a_bad_artifact_leaves_no_workspace_behind(monkeypatch, tmp_path):
    monkeypatch.setattr(server_mod.tempfile, "tempdir", str(tmp_path))
    junk = tmp_path / "junk.xml"
    junk.write_text("<net/>")
    http, grpc, metrics = free_ports(3)
    with pytest.raises(UserError, match="junk.xml"):
        server_mod.serve(junk, server_mod.ServeOptions(http_port=http, grpc_port=grpc, metrics_port=metrics, faces=False),
                         echo=lambda line: None)
    assert not list(tmp_path.glob("corese-serve-*"))


def test_serve_refuses_bad_artifacts_and_the_native_backend_on_the_bundled_server(int8_onnx, tmp_path):
    assert_one_line_error(run_cli("serve", str(tmp_path / "missing.onnx"), "--http-port", str(free_ports(1)[0])),
                          "artifact not found", "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file")
    assert_one_line_error(run_cli("serve", str(junk)), "junk.onnx")
    assert_one_line_error(run_cli("serve", str(int8_onnx), "--backend", "native"),
                          "bundled with nvidia-pytriton has only the Python backend", "--tritonserver PATH")
    assert_one_line_error(run_cli("serve", str(int8_onnx), "--tritonserver", str(tmp_path / "nope")),
                          "--tritonserver", "not an executable file")


def test_a_plan_on_a_machine_without_a_gpu_is_one_line_naming_it(tmp_path):
    from tests.serve.test_triton_repository import write_plan

    if Path("/dev/nvidia0").exists():
        pytest.skip("this machine has a GPU")
    plan = write_plan(tmp_path, frames_input=True)
    http, grpc, metrics = free_ports(3)
    temp = tmp_path / "tmp"
    temp.mkdir()
    res = subprocess.run([sys.executable, "-m", "corese_edge", "serve", str(plan), "--no-faces", "--http-port", str(http),
                          "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
                         capture_output=True, text=True, timeout=180, env=dict(os.environ, TMPDIR=str(temp)))
    line = assert_one_line_error(res, "tritonserver exited with status 1 before it was ready",
                                 "has kind KIND_GPU but no GPUs are available", "full log:")
    [log] = temp.glob("corese-serve-*/tritonserver.log")  # the failed start keeps its log, where the line says
    assert str(log) in line and "no GPUs are available" in log.read_text()


def test_without_any_triton_server_the_missing_extra_is_one_line(int8_onnx, tmp_path):
    # a Python on which nvidia-pytriton cannot be found, and a PATH without tritonserver
    code = ("import importlib.util as u, sys; real = u.find_spec; "
            "u.find_spec = lambda name, *a: None if name == 'pytriton' else real(name, *a); "
            "from corese_edge.cli import main; sys.argv = ['corese-edge', 'serve', sys.argv[1]]; main()")
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    assert shutil.which("tritonserver", path=env["PATH"]) is None
    res = subprocess.run([sys.executable, "-c", code, str(int8_onnx)], capture_output=True, text=True, timeout=120, env=env)
    assert_one_line_error(res, "no tritonserver on PATH and nvidia-pytriton is not installed", "pip install 'corese-edge[serve]'")


def test_a_missing_runtime_is_one_line_before_triton_starts(int8_onnx, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an environment without it does on import
    http, grpc, metrics = free_ports(3)
    options = server_mod.ServeOptions(http_port=http, grpc_port=grpc, metrics_port=metrics, faces=False,
                                      repository=str(tmp_path / "models"))
    monkeypatch.setattr(server_mod.tempfile, "tempdir", str(tmp_path))  # where serve's workspace would go
    with pytest.raises(MissingExtra, match=r"onnxruntime is not installed .*model\.int8\.onnx.*corese-edge\[export\]"):
        server_mod.serve(int8_onnx, options, echo=lambda line: None)
    assert listeners(http) == set()  # nothing was started
    assert not (tmp_path / "models").exists() and not list(tmp_path.glob("corese-serve-*"))  # nothing was written


def test_server_failures_give_the_error_that_explains_them():
    # as Triton 2.51 logged a plan served on a machine without a GPU
    log = ('W1204 04:27:19.577856 1741 pinned_memory_manager.cc:273] "Unable to allocate pinned system memory"\n'
           'E1204 04:27:19.578021 1741 server.cc:241] "CudaDriverHelper has not been initialized."\n'
           'E1204 04:27:19.578500 1741 server.cc:250] "some other error"\n'
           'E1204 04:27:19.580391 1741 model_lifecycle.cc:642] "failed to load \'coresse\' version 1: Invalid argument: '
           'instance group coresse_0 of model coresse has kind KIND_GPU but no GPUs are available"\n')
    assert server_mod.first_error(log) == ("failed to load 'coresse' version 1: Invalid argument: instance group "
                                           "coresse_0 of model coresse has kind KIND_GPU but no GPUs are available")
    no_load = "\n".join(log.splitlines()[:3])
    assert server_mod.first_error(no_load) == "some other error"  # the CUDA noise is skipped
    assert server_mod.first_error("I1204 04:01:02.000001 42 server.cc:100] fine\n") is None


def test_cpu_layout_defaults_and_what_the_user_gives():
    assert server_mod.cpu_layout("python", "ort", None, None, cores=2) == (2, 1)
    assert server_mod.cpu_layout("python", "openvino", None, None, cores=8) == (2, 4)
    assert server_mod.cpu_layout("python", "ort", None, None, cores=1) == (1, 1)
    assert server_mod.cpu_layout("python", "ort", 3, None, cores=8) == (3, 2)
    assert server_mod.cpu_layout("python", "ort", 1, 2, cores=8) == (1, 2)
    assert server_mod.cpu_layout("python", "trt", None, None, cores=8) == (1, None)  # a GPU model
    assert server_mod.cpu_layout("native", "ort", None, None, cores=8) == (1, None)  # Triton's own backend
    assert server_mod.cpu_layout("python", None, None, None, cores=8) == (1, None)  # no artifact to read


def test_the_command_binds_what_host_says_and_nothing_else(tmp_path):
    binary = server_mod.TritonBinary(Path("/usr/bin/tritonserver"), bundled=False)
    default = server_mod.TritonServer(binary, tmp_path, ["coresse"], ports={"http": 1, "grpc": 2, "metrics": 3}).command()
    assert {a for a in default if a.split("=")[0].endswith("-address")} == {
        "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1"}
    wide = server_mod.TritonServer(binary, tmp_path, ["coresse"], host="0.0.0.0").command()
    assert "--http-address=0.0.0.0" in wide and "--metrics-address=0.0.0.0" in wide


def test_the_bundled_environment_puts_this_pythons_libpython_first():
    binary = server_mod.bundled_tritonserver()
    env = server_mod.bundled_environment(binary, base={"LD_LIBRARY_PATH": "/opt/x", "PATH": "/bin"})
    import sysconfig

    parts = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert parts[0] == sysconfig.get_config_var("LIBDIR") and parts[-1] == "/opt/x" and str(binary.libs) in parts
    assert sysconfig.get_paths()["purelib"] in env["PYTHONPATH"].split(os.pathsep)
    stub = server_mod.python_stub(binary)
    assert stub.parent.name == f"{sys.version_info[0]}.{sys.version_info[1]}"
    with pytest.raises(UserError, match="no Python-backend stub for Python 2.7"):
        server_mod.python_stub(binary, "2.7")


def test_find_tritonserver_order(monkeypatch, tmp_path):
    fake = tmp_path / "tritonserver"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert server_mod.find_tritonserver(fake) == server_mod.TritonBinary(fake, bundled=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert server_mod.find_tritonserver().executable == fake  # PATH before the bundled build
    monkeypatch.setenv("PATH", "/nonexistent")
    assert server_mod.find_tritonserver().bundled
    monkeypatch.setattr(server_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingExtra, match=r"corese-edge\[serve\]"):
        server_mod.find_tritonserver()


def test_expression_client_errors_are_one_clear_line(served):
    from corese_edge.client import ExpressionClient, ServerError

    dead = free_ports(1)[0]
    with pytest.raises(ServerError, match="no server answers .* start one with corese-edge serve"):
        ExpressionClient(f"http://127.0.0.1:{dead}", timeout_s=5)
    with pytest.raises(ServerError, match="failed to connect"):
        ExpressionClient(f"grpc://127.0.0.1:{dead}", timeout_s=5)
    with pytest.raises(UserError, match="http:// or grpc://"):
        ExpressionClient("ftp://127.0.0.1:1")
    before = connections_to(served.http)
    with pytest.raises(ServerError, match="cannot read model 'nope'"):
        ExpressionClient(f"http://{served.http_url}", model="nope")
    # the failed client closed its connection: an open one would hold the server's stop up
    assert connections_to(served.http) == before
    with ExpressionClient(f"http://{served.http_url}") as client:
        with pytest.raises(ServerError, match="^coresse_faces: 'image' is not a decodable JPEG or PNG"):
            client.predict_faces(b"not an image")
        with pytest.raises(UserError, match="no images to process"):
            client.predict([])
