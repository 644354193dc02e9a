"""Text embedding: the :class:`embedding.embedder.Embedder` facade and its backends.

What it holds: the facade (``embedder``), what ``embedding_backend=auto`` means on this machine
(``backend_choice``, measured at a first start on ``probe_texts`` and keyed by ``cpu``; the
reference record ``choice.json`` names the candidates), the ONNX Runtime and OpenVINO int8
backends (``onnx_backend``, ``openvino_backend``), the model export they run and its cache
(``onnx_export``), and the texts the static int8 export is calibrated on (``calibration``).

Dependency rule: this package imports only :mod:`core` (settings, errors) and itself; nothing
in :mod:`core` imports it. Callers import the facade from its module,
``from embedding.embedder import Embedder``, so importing the package loads no model runtime.
"""
