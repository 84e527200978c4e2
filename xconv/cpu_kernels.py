"""TensorFlow's oneDNN CPU kernels, asked for wherever xconv is imported before TensorFlow.

TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI or BF16, AVX-VNNI or AMX; on other
x86 CPUs (an AVX2-only AMD EPYC here) they made the bundled model's forward pass and Grad-CAM 1.7x
faster and InceptionV3's forward pass 1.2x (``benchmarks/cpu_kernels.py``, docs/benchmarks.md).
TensorFlow reads the variable once, when it loads, so this runs at ``import xconv``; a user's own
``TF_ENABLE_ONEDNN_OPTS`` (``0`` turns them off) is left as it is.
"""

from __future__ import annotations

import os
import sys

VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def prefer_onednn_kernels() -> None:
    if "tensorflow" not in sys.modules:  # once TensorFlow has loaded, the variable no longer matters
        os.environ.setdefault(VARIABLE, "1")
