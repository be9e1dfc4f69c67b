"""Triton Python-backend models, each copied verbatim into a repository's version folder as ``model.py``.

They run inside Triton's Python backend, where ``triton_python_backend_utils`` exists, and import
corese-edge from Triton's Python environment (``pip install corese-edge`` plus the artifact's
backend: ``onnxruntime``, ``openvino``, or TensorRT with ``cuda-python``).  Outside Triton they are
tested with a fake ``triton_python_backend_utils`` (tests/serve/fake_pb_utils.py) that encodes the
python_backend README's documented behaviour.  Do not import these modules from corese-edge itself.
"""
