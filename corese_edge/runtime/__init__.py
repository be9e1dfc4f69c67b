"""The embeddable runtime: preprocessing, runners (TensorRT, ONNX Runtime, OpenVINO, torch), the classifier.

Torch-free: importing this package, or running ONNX Runtime / TensorRT models with it, never
imports torch (only :class:`~corese_edge.runtime.torch_runner.TorchRunner` does, when activated).
Backends are imported when a runner is activated, so a missing TensorRT only breaks ``.plan`` files and a missing OpenVINO only ``.xml`` files.
"""
from corese_edge.runtime.artifacts import FORMATS, format_of, open_runner
from corese_edge.runtime.base import Runner, TensorSpec
from corese_edge.runtime.classifier import ExpressionClassifier, Prediction, softmax
from corese_edge.runtime.openvino import OpenVinoRunner
from corese_edge.runtime.ort import OrtRunner
from corese_edge.runtime.preprocess import Preprocessor, as_frames
from corese_edge.runtime.torch_runner import TorchRunner
from corese_edge.runtime.trt import PlanSidecar, TrtRunner

__all__ = [
    "FORMATS",
    "ExpressionClassifier",
    "OpenVinoRunner",
    "OrtRunner",
    "PlanSidecar",
    "Prediction",
    "Preprocessor",
    "Runner",
    "TensorSpec",
    "TorchRunner",
    "TrtRunner",
    "as_frames",
    "format_of",
    "open_runner",
    "softmax",
]
