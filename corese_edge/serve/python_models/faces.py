"""Triton Python-backend model ``coresse_faces``: one photo in, every face's expression out.

``corese-edge package ARTIFACT --triton DIR`` copies this file to ``DIR/coresse_faces/1/model.py``
beside the YuNet model file.  Written against Triton's documented python_backend API
(triton-inference-server/python_backend README: ``TritonPythonModel``, ``get_input_tensor_by_name``,
``Tensor``, ``InferenceResponse``, ``TritonError``, and Business Logic Scripting:
``InferenceRequest(model_name=, requested_output_names=, inputs=).exec()``, ``has_error()``,
``error().message()``, ``get_output_tensor_by_name``).

Per request: input ``image``, BYTES ``[1]``, one encoded JPEG or PNG.  It is decoded as
``corese-edge predict`` decodes files (:func:`corese_edge.images.decode_rgb`), faces are found by
YuNet (:class:`corese_edge.runtime.faces.FaceDetector`, landmark refinement included) and aligned
to the model's stored face template (:func:`corese_edge.runtime.faces.align_face`), exactly as
``ExpressionClassifier(faces=True)`` does; then one BLS request to ``coresse`` carries all faces of
the image (split only when there are more faces than ``coresse``'s ``max_batch_size``).  Outputs,
one row per face, largest first: ``boxes`` float32 ``[n, 4]`` (x, y, w, h in the image's pixels, as
``Prediction.box``), ``landmarks`` float32 ``[n, 5, 2]``, ``scores`` float32 ``[n]``,
``probabilities`` float32 ``[n, C]``, ``labels`` BYTES ``[n]``; ``n`` is 0 for an image without a face.

A request that is not one decodable image gets an ``INVALID_ARG`` error naming the problem; a failed
BLS request gets ``coresse``'s error.  Needs, in Triton's Python environment: ``corese-edge``
(numpy, OpenCV >= 4.8).
"""
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from corese_edge.errors import DataError
from corese_edge.images import decode_rgb
from corese_edge.preprocessing import Preprocessing
from corese_edge.runtime.classifier import softmax
from corese_edge.runtime.faces import FaceDetector, align_face, crop_box
from corese_edge.runtime.preprocess import Preprocessor

INPUT = "image"


def _parameters(model_config):
    return {k: (v or {}).get("string_value", "") for k, v in (model_config.get("parameters") or {}).items()}


class _BadRequest(Exception):
    pass


class _ClassifierFailed(Exception):
    pass


class TritonPythonModel:
    """YuNet + alignment here, the classification in ``coresse`` (a BLS request per image)."""

    def initialize(self, args):
        self.model_config = json.loads(args["model_config"])
        params = _parameters(self.model_config)
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.detector = FaceDetector(os.path.join(folder, params["face_model_file"]), download=False)
        self.prep = Preprocessing.from_json(params["preprocessing"])
        self.class_names = tuple(json.loads(params["class_names"]))
        self.classifier = params.get("classifier_model", "coresse")
        self.classifier_input = params.get("classifier_input", "frames")
        self.classifier_output = params.get("classifier_output", "probabilities")
        self.max_batch = max(1, int(params.get("classifier_max_batch") or 1))
        self.takes_frames = params.get("input_form", "frames") == "frames"
        self.softmax = params.get("output_kind", "probabilities") != "probabilities"
        self.align = params.get("align", "true").lower() == "true"
        self.preprocessor = Preprocessor(self.prep, np.dtype(np.float32))

    # -- one request -----------------------------------------------------------------------------
    def _image(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, INPUT)
        if tensor is None:
            raise _BadRequest(f"coresse_faces: the request has no input '{INPUT}'")
        values = tensor.as_numpy()
        if values.size != 1:
            raise _BadRequest(f"coresse_faces: '{INPUT}' takes exactly one encoded image, got {values.size} elements")
        data = values.reshape(-1)[0]
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray, np.bytes_)):
            raise _BadRequest(f"coresse_faces: '{INPUT}' must be BYTES (an encoded JPEG or PNG)")
        try:
            return decode_rgb(bytes(data), INPUT)
        except DataError as exc:
            reason = getattr(exc, "reason", str(exc))
            raise _BadRequest(f"coresse_faces: '{INPUT}' is not a decodable JPEG or PNG ({reason})") from None

    def _classify(self, crops):
        """``(n, C)`` probabilities of ``crops`` (RGB, the model's size) from ``coresse``."""
        x = np.stack(crops)
        if self.prep.channel_order == "bgr":
            x = x[..., ::-1]
        x = np.ascontiguousarray(x) if self.takes_frames else self.preprocessor.normalize(np.ascontiguousarray(x))
        parts = []
        for start in range(0, len(x), self.max_batch):
            request = pb_utils.InferenceRequest(
                model_name=self.classifier,
                requested_output_names=[self.classifier_output],
                inputs=[pb_utils.Tensor(self.classifier_input, np.ascontiguousarray(x[start:start + self.max_batch]))],
            )
            response = request.exec()
            if response.has_error():
                raise _ClassifierFailed(f"coresse_faces: {self.classifier} failed: {response.error().message()}")
            out = pb_utils.get_output_tensor_by_name(response, self.classifier_output)
            if out is None:
                raise _ClassifierFailed(f"coresse_faces: {self.classifier} returned no '{self.classifier_output}'")
            parts.append(np.asarray(out.as_numpy(), np.float32).reshape(-1, len(self.class_names)))
        out = np.concatenate(parts, axis=0)
        return softmax(out) if self.softmax else out

    def _response(self, request):
        rgb = self._image(request)
        faces = self.detector.detect(rgb, "rgb")
        size = self.prep.size
        crops = [align_face(rgb, f, self.prep.face_template, size)[0] if self.align else crop_box(rgb, f, size)
                 for f in faces]
        c = len(self.class_names)
        probs = self._classify(crops) if crops else np.zeros((0, c), np.float32)
        labels = np.array([self.class_names[int(i)].encode("utf-8") for i in np.argmax(probs, axis=1)] if len(probs) else [],
                          dtype=np.object_)
        outputs = {
            "boxes": np.array([f.box for f in faces], np.float32).reshape(-1, 4),
            "landmarks": np.array([f.landmarks for f in faces], np.float32).reshape(-1, 5, 2),
            "scores": np.array([f.score for f in faces], np.float32).reshape(-1),
            "probabilities": np.ascontiguousarray(probs, np.float32),
            "labels": labels,
        }
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v) for k, v in outputs.items()])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._response(request))
            except _BadRequest as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)))
            except _ClassifierFailed as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INTERNAL)))
        return responses

    def finalize(self):
        self.detector = None
