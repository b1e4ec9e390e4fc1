"""Streaming inference of causal recurrent models over MQTT: exact numpy steps, per-device state, micro-batches.

Public pieces: `StepModel` (step.py), `WindowModel` (window.py), `StateTable` (state.py), `Service`
(service.py), `register` for the rnnzoo CLI (cli.py). Importing this package does not import Keras.
"""

from streaming.step import NotStepable, StepModel

__all__ = ["NotStepable", "StepModel"]
