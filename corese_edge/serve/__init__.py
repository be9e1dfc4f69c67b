"""Serving: an artifact packaged for NVIDIA Triton Inference Server and for DeepStream's nvinfer.

An application layer like ``cli/``: it reads artifacts through the runtime (ONNX metadata, the plan
sidecar ``PlanSidecar``, OpenVINO rt_info) and reuses the export's graph code (``--embed-preprocess``),
and nothing below it imports it.

* :func:`corese_edge.serve.triton.package_triton`: a Triton model repository (``coresse`` with the
  artifact's native backend or the Python backend, and the face pipeline ``coresse_faces``);
* :func:`corese_edge.serve.deepstream.package_deepstream`: ``model.softmax.onnx``, ``labels.txt``
  and an nvinfer secondary-classifier config;
* :func:`corese_edge.serve.server.serve`: ``corese-edge serve``, a real ``tritonserver`` (on PATH, or
  the one bundled with nvidia-pytriton) run on that repository until SIGINT / SIGTERM;
* :mod:`corese_edge.serve.python_models`: the Python-backend ``model.py`` files, copied verbatim
  into the repository (they run inside Triton, against ``triton_python_backend_utils``).
"""
