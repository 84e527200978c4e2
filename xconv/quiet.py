"""Import TensorFlow without its start-up chatter on stderr.

TensorFlow's C++ libraries log a few lines at import (absl's "before InitializeLog" notice, oneDNN's
round-off note, "could not find cuda drivers"), twice, and ``TF_CPP_MIN_LOG_LEVEL`` no longer silences
them. They are written to file descriptor 2 by C++ code, so Python's ``sys.stderr`` cannot catch them:
the descriptor itself is pointed at a temporary file during the import. Lines that are not known start-up
notices are written back to stderr afterwards, so real warnings and errors still show. ``XCONV_DEBUG=1``
(``xconv --debug``) imports TensorFlow untouched. ``no_retracing_notices`` quiets TensorFlow's retracing
notice while xconv builds its own compiled functions.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import tempfile
from contextlib import contextmanager

#: Start-up notices that say nothing about the user's work.
STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog"
    r"|oneDNN custom operations are on"
    r"|Could not find cuda drivers|cudart_stub|cuda_executor|cuInit|computation_placer"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|TF-TRT Warning|This TensorFlow binary is optimized"
    r"|rebuild TensorFlow with the appropriate compiler flags|absl::InitializeLog"
)


def debugging() -> bool:
    return os.environ.get("XCONV_DEBUG", "") not in ("", "0")


def quiet_tensorflow() -> None:
    """Import tensorflow and keras once, dropping only their known start-up notices from stderr."""
    if "tensorflow" in sys.modules or debugging():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # C++ INFO lines off; warnings and errors still show
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow

            importlib.import_module("keras")  # its own import logs through the same libraries

            tensorflow.config.list_physical_devices()  # device discovery logs its own notices (cuInit)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
    kept = [line for line in text.splitlines() if line.strip() and not STARTUP_NOISE.search(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


class _RetracingNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@contextmanager
def no_retracing_notices():
    """Drop TensorFlow's "N out of the last M calls to <function ...> triggered tf.function retracing"
    inside the block. xconv builds compiled functions per model, layer, method and options by design
    (cached, so a repeat never retraces); TensorFlow counts the functions built from one closure as one
    function retracing, and warned a Python user who explained five layers' filters ten times. Outside
    the block the user's own functions still get the notice; ``XCONV_DEBUG=1`` keeps it everywhere."""
    if debugging():
        yield
        return
    logger, notices = logging.getLogger("tensorflow"), _RetracingNotices()
    logger.addFilter(notices)
    try:
        yield
    finally:
        logger.removeFilter(notices)
