"""The command-line flags `rnnzoo serve` and `rnnzoo worker` share, declared once: the device policy
(`streaming.core.DevicePolicy`), --runtime, --mode and --window, the metrics endpoint; and the argparse type that
refuses nan, inf and numbers <= 0."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from streaming.core import DevicePolicy
from streaming.models import RUNTIMES

# The flags both `rnnzoo serve` and `rnnzoo worker` take, declared once: (flag, DevicePolicy field or "runtime",
# type, lower bound, help). Each command adds them with `add_policy_arguments`.
POLICY_FLAGS: list[tuple[str, str, type, float, str]] = [
    ("--max-devices", "max_devices", int, 1, "device states held (per partition in JetStream mode)"),
    ("--ttl", "ttl_s", float, 1e-3, "forget a device idle this many seconds (JetStream: of stream time)"),
    (
        "--max-new-devices-per-s",
        "max_new_per_s",
        float,
        1e-3,
        "admission cap on churn: new devices that would evict recently seen ones",
    ),
    ("--max-device-id-bytes", "max_device_id_bytes", int, 1, "refuse longer device ids (UTF-8 bytes)"),
]


def finite_positive(kind: type, low: float | None = None, high: float | None = None) -> Callable[[str], Any]:
    """An argparse type: a finite number > 0 (within [low, high] when given); nan and inf are refused."""
    import argparse

    def parse_value(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text}")
        return value

    return parse_value


def add_policy_arguments(parser: Any, with_defaults: bool) -> None:
    """Add the device-policy flags and --runtime to a command's parser. `with_defaults`: the DevicePolicy
    defaults (the worker); else None, so a config file's values stand unless a flag is given (serve)."""
    defaults = DevicePolicy()
    for flag, attr, kind, low, text in POLICY_FLAGS:
        default = getattr(defaults, attr) if with_defaults else None
        shown = (
            f" (default {default:g})" if isinstance(default, (int, float)) else " (default from the config)"
        )
        parser.add_argument(flag, type=finite_positive(kind, low), default=default, help=text + shown)
    parser.add_argument(
        "--runtime",
        choices=list(RUNTIMES),
        default="numpy" if with_defaults else None,
        help="what steps a step-mode model: the numpy engine (default), or its exported step graph — ONNX in "
        "onnxruntime, LiteRT in ai-edge-litert (what `rnnzoo export` writes; needs rnn-zoo[export])",
    )


def add_serving_arguments(parser: Any, with_defaults: bool) -> None:
    """Every flag `rnnzoo serve` and `rnnzoo worker` share, declared once: the device policy and --runtime
    (`add_policy_arguments`), --mode and --window, --metrics-port and --metrics-host. `with_defaults` as there
    (serve: None, so its config file's values stand)."""
    from streaming.ports import port_number

    add_policy_arguments(parser, with_defaults)
    parser.add_argument(
        "--mode",
        choices=["auto", "step", "window"],
        default="step" if with_defaults else "auto",
        help="step: one recurrent step per reading; window: the model on each device's last W readings; "
        f"auto: step if the model is causal (default {'step' if with_defaults else 'auto'})",
    )
    parser.add_argument(
        "--window", type=finite_positive(int), help="W, the readings a window-mode model sees"
    )
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        help="serve Prometheus /metrics, /healthz and /readyz on this port (0: any free port)",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1" if with_defaults else None,
        help="address for --metrics-port (default 127.0.0.1)",
    )
