"""The one place the zoo imports Keras: ``from zoo.backend import keras``.

Importing it here, once, does two things every user-facing path needs: TensorFlow's C++ start-up chatter (absl,
oneDNN lines written straight to file descriptor 2, which no environment variable silences) is muted so that
a command's error stays one line, and nothing imports Keras (~10 s, ~600 MB with TensorFlow) until a model is
actually built, loaded or run — `rnnzoo list`, `info`, `--help` and the streaming service never pay for it.
Errors still raise in Python.
"""

from __future__ import annotations

import os
import sys

# 3 also hides TensorFlow's C++ "E" lines, e.g. "oneDNN supports DT_BOOL only on platforms with AVX-512" on
# every masked (text) model's first call, which is advice, not an error; real failures still raise in Python.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

if "keras" not in sys.modules:
    _saved, _devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(_devnull, 2)
        import keras
    finally:
        os.dup2(_saved, 2)
        os.close(_saved)
        os.close(_devnull)
else:
    import keras

__all__ = ["keras"]
