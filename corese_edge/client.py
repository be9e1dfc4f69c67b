"""``ExpressionClient``: the in-process classifier's API, answered by a Triton server.

::

    from corese_edge.client import ExpressionClient

    with ExpressionClient("http://127.0.0.1:8000") as client:      # or "grpc://127.0.0.1:8001"
        [p] = client.predict(frame)                                  # p.label, p.probs: as ExpressionClassifier gives
        faces = client.predict_faces("photo.jpg")                    # coresse_faces: every face of the photo

It reads the model's class names and preprocessing from the server (the ``parameters`` of
``coresse``'s config, written by ``corese-edge package --triton`` / ``serve``), prepares frames here
with that preprocessing (resize to the model's size and its channel order; a model that takes the
float input is also normalised here), sends them as one request per ``batch_size`` frames, and
returns the same :class:`~corese_edge.runtime.classifier.Prediction` objects as
:class:`~corese_edge.runtime.classifier.ExpressionClassifier`.  ``predict_faces`` sends encoded
images to ``coresse_faces`` (frames are PNG-encoded here, losslessly).

Torch-free: numpy, OpenCV and ``tritonclient`` (extra ``serve``; ``tritonclient[grpc]`` for gRPC).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from corese_edge.errors import UserError, require
from corese_edge.preprocessing import Preprocessing
from corese_edge.runtime.classifier import Prediction, softmax
from corese_edge.runtime.preprocess import Preprocessor, as_frames

CLASSIFIER = "coresse"
FACES = "coresse_faces"
#: Triton data type -> numpy dtype, for the classifier's input
_NUMPY = {"TYPE_UINT8": np.uint8, "TYPE_FP32": np.float32, "TYPE_FP16": np.float16}


class ServerError(UserError):
    """The server refused or failed a request; the message is its own, prefixed with the model."""


def _split_url(url: str) -> tuple[str, str]:
    """``(protocol, host:port)`` of ``http://h:p``, ``grpc://h:p`` or a bare ``h:p`` (HTTP)."""
    if "://" in url:
        scheme, rest = url.split("://", 1)
    else:
        scheme, rest = "http", url
    scheme = scheme.lower()
    if scheme not in ("http", "grpc"):
        raise UserError(f"ExpressionClient takes an http:// or grpc:// URL, got {url!r}")
    return scheme, rest.rstrip("/")


class ExpressionClient:
    """A client of ``coresse`` (and ``coresse_faces``) on a Triton server; see the module doc.

    ``color_order``: the channel order of the frames you pass (``"rgb"`` default, ``"bgr"`` for
    OpenCV); paths are decoded correctly either way.  ``batch_size``: frames per request (default:
    the model's ``max_batch_size``).  ``timeout_s``: per request.
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", *, model: str = CLASSIFIER, faces_model: str = FACES,
                 color_order: str = "rgb", batch_size: int | None = None, timeout_s: float = 60.0) -> None:
        self.protocol, self.address = _split_url(url)
        self.model, self.faces_model = model, faces_model
        if color_order not in ("rgb", "bgr"):
            raise UserError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
        self.color_order = color_order
        self.timeout_s = float(timeout_s)
        if self.protocol == "grpc":
            self._t = require("tritonclient.grpc", "serve", "ExpressionClient over gRPC")
            self._client = self._t.InferenceServerClient(self.address)
        else:
            self._t = require("tritonclient.http", "serve", "ExpressionClient")
            self._client = self._t.InferenceServerClient(self.address, connection_timeout=self.timeout_s,
                                                         network_timeout=self.timeout_s)
        try:
            self._setup(url, model, batch_size)
        except BaseException:
            self._client.close()  # an open keep-alive connection would hold a stopping server up
            raise

    def _setup(self, url: str, model: str, batch_size: int | None) -> None:
        config = self._config(model)
        params = {k: (v or {}).get("string_value", "") for k, v in (config.get("parameters") or {}).items()}
        try:
            self.class_names = tuple(json.loads(params["class_names"]))
            self.preprocessing = Preprocessing.from_json(params["preprocessing"])
        except (KeyError, ValueError, TypeError) as exc:
            raise UserError(f"{url}: model '{model}' carries no corese-edge parameters (class_names, preprocessing): "
                            f"was it packaged by corese-edge package --triton / serve?  [{exc}]") from None
        [tensor] = config["input"]
        self.input_name = tensor["name"]
        dtype = tensor.get("data_type", "TYPE_UINT8")
        if dtype not in _NUMPY:
            raise UserError(f"{url}: model '{model}' takes {dtype}, which ExpressionClient does not send")
        self.input_dtype = np.dtype(_NUMPY[dtype])
        self.output_name = config["output"][0]["name"]
        self.softmax = params.get("output_kind", "probabilities") != "probabilities"
        self.max_batch = int(config.get("max_batch_size") or 1)
        if batch_size is not None and batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = min(batch_size or self.max_batch, self.max_batch)
        # uint8 frames: resize + channel order here, normalisation in the model; float: all of it here
        self.preprocessor = Preprocessor(self.preprocessing, self.input_dtype if self.input_dtype == np.uint8 else np.dtype(np.float32))

    # -- server calls ----------------------------------------------------------------------------
    def _config(self, model: str) -> dict[str, Any]:
        try:
            if self.protocol == "grpc":
                return self._client.get_model_config(model, as_json=True)["config"]
            return self._client.get_model_config(model)
        except self._t.InferenceServerException as exc:
            raise ServerError(f"{self.protocol}://{self.address}: cannot read model '{model}': {exc.message()}") from None
        except OSError as exc:
            raise ServerError(f"{self.protocol}://{self.address}: no server answers ({exc}); "
                              "start one with corese-edge serve ARTIFACT") from None

    def _infer(self, model: str, name: str, array: np.ndarray, dtype: str, outputs: list[str]) -> dict[str, np.ndarray]:
        inp = self._t.InferInput(name, list(array.shape), dtype)
        if self.protocol == "http":
            inp.set_data_from_numpy(array, binary_data=True)
            requested = [self._t.InferRequestedOutput(o, binary_data=True) for o in outputs]
        else:
            inp.set_data_from_numpy(array)
            requested = [self._t.InferRequestedOutput(o) for o in outputs]
        try:
            if self.protocol == "http":
                result = self._client.infer(model, [inp], outputs=requested, timeout=int(self.timeout_s * 1e6))
            else:
                result = self._client.infer(model, [inp], outputs=requested, client_timeout=self.timeout_s)
        except self._t.InferenceServerException as exc:
            message = exc.message() or str(exc)
            raise ServerError(message if message.startswith(f"{model}:") else f"{model}: {message}") from None
        return {o: result.as_numpy(o) for o in outputs}

    # -- the classifier's API --------------------------------------------------------------------
    def probabilities(self, images: Any, color_order: str | None = None) -> np.ndarray:
        """``(N, num_classes)`` float32 softmax probabilities of whole images (no face detection)."""
        order = color_order or self.color_order
        frames = as_frames(images, order)
        dtype = "UINT8" if self.input_dtype == np.uint8 else "FP32"
        chunks = []
        for start in range(0, len(frames), self.batch_size):
            x = self.preprocessor.from_frames(frames[start:start + self.batch_size], order)
            out = self._infer(self.model, self.input_name, x, dtype, [self.output_name])[self.output_name]
            chunks.append(np.asarray(out, np.float32).reshape(len(x), -1))
        probs = np.concatenate(chunks, axis=0)
        return softmax(probs) if self.softmax else probs

    def predict(self, images: Any, color_order: str | None = None) -> list[Prediction]:
        """One :class:`Prediction` per image, as ``ExpressionClassifier.predict`` without faces."""
        return [self._prediction(p, i) for i, p in enumerate(self.probabilities(images, color_order))]

    def predict_faces(self, images: Any, color_order: str | None = None) -> list[list[Prediction]]:
        """One list per image of every face ``coresse_faces`` found (largest first), as
        ``ExpressionClassifier(faces=True).predict_faces``.  ``images``: a path, encoded bytes, an
        ``(H, W, 3)`` uint8 frame, or a list of these."""
        items = images if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise UserError("no images to process: the list is empty")
        out = []
        for i, item in enumerate(items):
            data = self._encoded(item, color_order or self.color_order)
            result = self._infer(self.faces_model, "image", np.array([data], dtype=np.object_), "BYTES",
                                 ["boxes", "landmarks", "scores", "probabilities"])
            faces = []
            for rank, (box, marks, score, probs) in enumerate(zip(result["boxes"], result["landmarks"],
                                                                  result["scores"], result["probabilities"])):
                p = np.asarray(probs, np.float32)
                index = int(np.argmax(p))
                faces.append(Prediction(self.class_names[index], index, p, box=tuple(float(v) for v in box),
                                        landmarks=np.asarray(marks, np.float32), image=i, face=rank, score=float(score)))
            out.append(faces)
        return out

    def _encoded(self, item: Any, order: str) -> bytes:
        if isinstance(item, (bytes, bytearray)):
            return bytes(item)
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            try:
                return path.read_bytes()
            except OSError as exc:
                raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
        [frame] = as_frames(item, order)
        import cv2

        ok, buf = cv2.imencode(".png", frame if order == "bgr" else frame[..., ::-1])
        if not ok:
            raise UserError("could not PNG-encode the frame")
        return buf.tobytes()

    def _prediction(self, probs: np.ndarray, image: int) -> Prediction:
        index = int(np.argmax(probs))
        return Prediction(self.class_names[index], index, probs, image=image)

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "ExpressionClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
