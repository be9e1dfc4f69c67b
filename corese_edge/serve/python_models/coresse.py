"""Triton Python-backend model ``coresse``: corese-edge's own runner behind Triton's dynamic batcher.

``corese-edge package ARTIFACT --triton DIR --backend python`` copies this file to
``DIR/coresse/1/model.py`` beside the unchanged artifact (``model.onnx``; ``model.xml`` +
``model.bin``; ``model.plan`` + ``model.plan.json``).  Written against Triton's documented
python_backend API (triton-inference-server/python_backend README: ``TritonPythonModel`` with
``initialize`` / ``execute`` / ``finalize``, ``get_input_tensor_by_name``, ``Tensor``,
``InferenceResponse``, ``TritonError``, ``TritonModelException``).

Input ``frames``: uint8 ``[N, S, S, 3]``, resized, in the model's channel order.  Output
``probabilities``: float32 ``[N, C]``.  All requests of one ``execute`` call (those the dynamic
batcher grouped) run as one batch, split into runner calls of at most the artifact's maximum batch.
Needs, in Triton's Python environment: ``corese-edge`` and the artifact's backend (``onnxruntime``,
``openvino``, or TensorRT with ``cuda-python``).
"""
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from corese_edge.errors import UserError
from corese_edge.runtime.artifacts import open_runner
from corese_edge.runtime.classifier import softmax
from corese_edge.runtime.preprocess import Preprocessor

INPUT = "frames"
OUTPUT = "probabilities"


def _parameters(model_config):
    """``parameters { key value { string_value } }`` of the config as ``{key: string}``."""
    return {k: (v or {}).get("string_value", "") for k, v in (model_config.get("parameters") or {}).items()}


def _error(message, code=None):
    code = pb_utils.TritonError.INVALID_ARG if code is None else code
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


class TritonPythonModel:
    """One corese-edge runner per model instance."""

    def initialize(self, args):
        self.model_config = json.loads(args["model_config"])
        params = _parameters(self.model_config)
        path = os.path.join(args["model_repository"], args["model_version"], params.get("artifact_file", ""))
        options = {}
        if path.endswith((".plan", ".engine")) and args.get("model_instance_kind") == "GPU":
            options["device"] = int(args.get("model_instance_device_id") or 0)
        if params.get("threads"):  # CPU threads of this instance's runner (ONNX Runtime, OpenVINO)
            options["threads"] = int(params["threads"])
        try:
            self.runner = open_runner(path, **options)
            self.runner.activate()
        except UserError as exc:  # the model fails to load with corese-edge's one-line reason
            raise pb_utils.TritonModelException(f"coresse: {exc}") from None
        prep = self.runner.metadata.preprocessing
        self.size = prep.size
        self.input = self.runner.inputs[0]
        self.output = self.runner.outputs[0].name
        self.takes_frames = np.dtype(self.input.dtype) == np.uint8
        self.preprocessor = Preprocessor(prep, np.dtype(self.input.dtype))
        self.chunk = self.runner.max_batch or int(self.model_config.get("max_batch_size") or 1) or 1

    def _frames(self, request):
        """The request's frames, or an error message."""
        tensor = pb_utils.get_input_tensor_by_name(request, INPUT)
        if tensor is None:
            return None, f"coresse: the request has no input '{INPUT}'"
        frames = tensor.as_numpy()
        want = (self.size, self.size, 3)
        if frames.dtype != np.uint8 or frames.ndim != 4 or tuple(frames.shape[1:]) != want or frames.shape[0] < 1:
            return None, (f"coresse: input '{INPUT}' must be uint8 [N, {self.size}, {self.size}, 3], "
                          f"got {frames.dtype} {list(frames.shape)}")
        return frames, None

    def _probabilities(self, frames):
        chunks = []
        for start in range(0, len(frames), self.chunk):
            part = frames[start:start + self.chunk]
            x = part if self.takes_frames else self.preprocessor.normalize(part)
            out = np.asarray(self.runner.infer({self.input.name: np.ascontiguousarray(x)})[self.output], np.float32)
            chunks.append(out.reshape(len(part), -1))
        out = np.concatenate(chunks, axis=0)
        return out if self.output == OUTPUT else softmax(out)

    def execute(self, requests):
        responses = [None] * len(requests)
        batch, owners = [], []
        for i, request in enumerate(requests):
            frames, problem = self._frames(request)
            if problem is not None:
                responses[i] = _error(problem)
            else:
                batch.append(frames)
                owners.append(i)
        if batch:
            try:
                probs = self._probabilities(np.concatenate(batch, axis=0))
            except UserError as exc:
                for i in owners:
                    responses[i] = _error(f"coresse: {exc}", pb_utils.TritonError.INTERNAL)
            else:
                start = 0
                for i, frames in zip(owners, batch):
                    part = np.ascontiguousarray(probs[start:start + len(frames)])
                    start += len(frames)
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(OUTPUT, part)])
        return responses

    def finalize(self):
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.close()
