"""`rnnzoo serve | simulate | demo`: the streaming sub-commands. `rnnzoo.cli` calls `register(subparsers)`.

Also runnable alone: `python -m streaming serve ...`. Every expected failure (bad argument, unknown model,
corrupt file, unreachable broker, refused credentials) prints one line `rnnzoo <command>: error: ...` and
returns 2, as every rnnzoo command does.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from streaming.ports import port_number

DEMO_MODEL = "activity-gru-causal"


def _fail(command: str, message: str, code: int = 2) -> int:
    print(f"rnnzoo {command}: error: {message}", file=sys.stderr)
    return code


def _user_errors() -> tuple[type[BaseException], ...]:
    from streaming.config import ConfigError
    from streaming.models import ModelError
    from streaming.service import BrokerUnreachable
    from zoo.step import NotStepable

    return (ConfigError, ModelError, BrokerUnreachable, NotStepable, ConnectionError, OSError, ValueError)


def _settings_from_args(args: argparse.Namespace) -> Any:
    from streaming.config import ConfigError, from_dict, load

    if args.config:
        if args.model or args.topic:
            raise ConfigError("give either --config or --model/--topic, not both")
        settings = load(args.config)
    else:
        if not args.model or not args.topic:
            raise ConfigError("give --config FILE, or --model NAME --topic FILTER (and --broker URL)")
        binding: dict[str, Any] = {"topic": args.topic, "model": args.model, "mode": args.mode}
        if args.window:
            binding["window"] = args.window
        settings = from_dict({"bindings": [binding]})
    # Command-line flags override the file, so one config serves many runs.
    broker, service = settings.broker, settings.service
    if args.broker:
        broker.url = args.broker
    for flag, target, attr in [
        ("qos", broker, "qos"),
        ("connect_timeout", broker, "connect_timeout_s"),
        ("username", broker, "username"),
        ("password_env", broker, "password_env"),
        ("client_id", broker, "client_id"),
        ("max_batch", service, "max_batch"),
        ("max_delay_ms", service, "max_delay_ms"),
        ("snapshot", service, "snapshot_path"),
        ("snapshot_interval", service, "snapshot_interval_s"),
        ("ttl", service, "ttl_s"),
        ("max_devices", service, "max_devices"),
        ("max_device_id_bytes", service, "max_device_id_bytes"),
        ("max_new_devices_per_s", service, "max_new_devices_per_s"),
        ("output", service, "output"),
        ("status_topic", service, "status_topic"),
        ("metrics_port", service, "metrics_port"),
        ("metrics_host", service, "metrics_host"),
        ("homeassistant", service, "homeassistant"),
        ("homeassistant_remove", service, "homeassistant_remove"),
        ("log_format", service, "log_format"),
        ("runtime", service, "runtime"),
    ]:
        value = getattr(args, flag)
        if value is not None:
            setattr(target, attr, value)
    if args.tls_ca or args.tls_insecure:
        from streaming.config import TLSSettings

        broker.tls = TLSSettings(ca_certs=args.tls_ca, insecure=args.tls_insecure)
    from streaming.config import validate

    return validate(settings)


def cmd_serve(args: argparse.Namespace) -> int:
    from streaming.logs import configure

    configure(args.log_level, args.log_format or "text")
    try:
        settings = _settings_from_args(args)
        if settings.service.log_format != (args.log_format or "text"):
            configure(args.log_level, settings.service.log_format)  # the config file asked for JSON lines
        from streaming.live import ServiceFleet, start_ui
        from streaming.service import Service, run_until_signal

        if args.ui is not None and settings.service.metrics_port is None:
            settings.service.metrics_port = 0  # the page's latency figures are the metrics' histograms
        service = Service(settings)
        for route in service.routes:
            extra = f" ({route.model.note})" if route.model.note else ""
            logging.info(
                "%s → %s in %s mode%s", route.binding.topic, route.model.name, route.model.mode, extra
            )
        models = {r.model.name: r.model.class_names for r in service.routes}
        live = start_ui(args, lambda: ServiceFleet(service), models)
        if live is not None:
            service.observer = live[0]
            logging.info("live page on %s", live[1].url)
        try:
            run_until_signal(service)
        finally:
            if live is not None:
                live[1].stop()
    except _user_errors() as err:
        return _fail("serve", str(err))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        import numpy as np

        from streaming.models import serve_model
        from streaming.simulate import Simulator, load_dataset

        # Keras in this process only for --check's reference; otherwise the engine as `serve` builds it.
        served = serve_model(args.model, mode=args.mode, window=args.window, isolate=not args.check)
        data = load_dataset(args.model, args.data, served.engine.n_features, class_names=served.class_names)
        expected = None
        if args.check:
            if served.mode != "step":
                return _fail(
                    "simulate", "--check compares step-mode predictions; this model streams in window mode"
                )
            # The reference is the Keras model itself on whole sequences, not our step engine.
            from zoo.backend import keras

            expected = np.concatenate(
                [
                    keras.ops.convert_to_numpy(served.keras_model(data.X[i : i + 256], training=False))
                    for i in range(0, data.X.shape[0], 256)
                ]
            )
        sim = Simulator(
            args.broker,
            data,
            args.devices,
            args.rate,
            served.name,
            topic=args.topic,
            qos=args.qos,
            expected=expected,
        )
        duration = args.duration if args.duration is not None or args.sequences else 10.0
        try:
            sim.run(duration=duration, sequences=args.sequences)
            sim.drain(args.grace)
        finally:
            sim.close()
    except KeyboardInterrupt:
        return 130
    except _user_errors() as err:
        return _fail("simulate", str(err))
    t = sim.tally
    lat = sorted(t.latencies)
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (lambda q: float("nan"))
    print(
        f"sent {t.sent} readings from {args.devices} devices; received {t.received} predictions; "
        f"missing {sim.missing}; latency p50 {pct(0.5):.1f} ms p99 {pct(0.99):.1f} ms"
    )
    if t.accuracy is not None:
        print(f"accuracy {t.accuracy:.1%} over {t.labelled} labelled steps")
    if args.check:
        ok = t.checked == t.sent and t.max_abs_diff <= 1e-5
        print(
            f"check: {t.checked}/{t.sent} predictions compared with the offline model, "
            f"max abs diff {t.max_abs_diff:.2e} -> {'OK' if ok else 'FAILED'}"
        )
        return 0 if ok else 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streaming.demo import run_demo

    try:
        return run_demo(
            args.model,
            args.devices,
            args.rate,
            args.duration,
            args.broker,
            args.data,
            None if args.no_ui else args.ui,
            args.ui_host,
        )
    except KeyboardInterrupt:
        return 130
    except (*_user_errors(), RuntimeError) as err:
        return _fail("demo", str(err))


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `serve`, `simulate` and `demo` to the rnnzoo command line."""
    from streaming.flags import add_serving_arguments

    serve = subparsers.add_parser(
        "serve",
        help="serve models on MQTT topics, one step per reading",
        description="Subscribe to sensor topics and publish a prediction per reading.",
    )
    serve.add_argument("--config", help="TOML config file (see docs/streaming.md)")
    serve.add_argument(
        "--model", help="zoo model name, a .keras file, or a model folder (model.keras + card.json)"
    )
    serve.add_argument("--topic", help="topic filter whose '+' level is the device id, e.g. sensors/+/imu")
    serve.add_argument("--broker", help="mqtt://HOST:PORT (mqtts:// for TLS); default mqtt://127.0.0.1:1883")
    serve.add_argument("--qos", type=int, choices=[0, 1], help="MQTT QoS for subscriptions and predictions")
    serve.add_argument(
        "--connect-timeout", type=_positive(float), help="give up if the broker is unreachable this long"
    )
    serve.add_argument("--username", help="broker user name")
    serve.add_argument("--password-env", help="environment variable holding the broker password")
    serve.add_argument("--client-id", help="MQTT client id (default: derived from the host and pid)")
    serve.add_argument("--tls-ca", help="CA certificate file (turns TLS on)")
    serve.add_argument(
        "--tls-insecure", action="store_true", default=False, help="skip hostname verification"
    )
    serve.add_argument("--max-batch", type=_positive(int), help="most readings stepped together")
    serve.add_argument("--max-delay-ms", type=float, help="longest a reading waits for its micro-batch")
    serve.add_argument(
        "--snapshot", help="state snapshot file: restored on start, written periodically and on exit"
    )
    serve.add_argument("--snapshot-interval", type=_positive(float), help="seconds between snapshots")
    # --max-devices, --ttl, …, --runtime, --mode, --window, --metrics-port/host: shared with `rnnzoo worker`
    add_serving_arguments(serve, with_defaults=False)
    serve.add_argument(
        "--output",
        choices=["reading", "batch", "both"],
        help="one message per reading, one per micro-batch, or both",
    )
    serve.add_argument("--status-topic", help="retained online/offline topic (last will)")
    serve.add_argument(
        "--homeassistant",
        nargs="?",
        const="homeassistant",
        metavar="PREFIX",
        help="announce each device to Home Assistant by MQTT discovery (prefix default: homeassistant)",
    )
    serve.add_argument(
        "--homeassistant-remove",
        action="store_true",
        default=None,
        help="remove a device's Home Assistant sensors when its state is evicted or reset",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--log-format", choices=["text", "json"], help="text lines (default) or one JSON object per line"
    )
    from streaming.live import add_ui_arguments

    add_ui_arguments(serve)  # --ui, --ui-host, --ui-token-env: the live page (also on `rnnzoo worker`)
    serve.set_defaults(func=cmd_serve)

    sim = subparsers.add_parser(
        "simulate",
        help="replay held-out sequences as MQTT devices",
        description="Publish a model's test sequences as devices; optionally check answers.",
    )
    sim.add_argument("--model", default=DEMO_MODEL, help="zoo model name or .keras path")
    sim.add_argument("--devices", type=_positive(int), default=10, help="simulated sensors")
    sim.add_argument("--rate", type=_positive(float), default=10.0, help="readings per second per device")
    sim.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://HOST:PORT")
    sim.add_argument("--topic", default="sensors/{device}/imu", help="reading topic template")
    sim.add_argument("--duration", type=_positive(float), help="seconds to run (default 10)")
    sim.add_argument("--sequences", type=_positive(int), help="sequences per device, instead of --duration")
    sim.add_argument("--data", help=".npz with X [N,T,F] (and y) to replay instead of the zoo's test split")
    sim.add_argument("--check", action="store_true", help="compare predictions with the model run offline")
    sim.add_argument("--qos", type=int, choices=[0, 1], default=0, help="MQTT QoS of the readings")
    sim.add_argument(
        "--mode", choices=["auto", "step", "window"], default="auto", help="as for serve --check"
    )
    sim.add_argument("--window", type=_positive(int), help="window length for window mode")
    sim.add_argument("--grace", type=float, default=5.0, help="seconds to wait for the last predictions")
    sim.set_defaults(func=cmd_simulate)

    demo = subparsers.add_parser(
        "demo",
        help="embedded broker + service + simulated sensors, live",
        description="Needs no broker: starts one (amqtt) on a free port.",
    )
    demo.add_argument("--model", default=DEMO_MODEL, help=f"causal zoo model to serve (default {DEMO_MODEL})")
    demo.add_argument("--devices", type=_positive(int), default=8, help="simulated sensors (default 8)")
    demo.add_argument("--rate", type=_positive(float), default=10.0, help="readings per second per device")
    demo.add_argument(
        "--duration", type=_positive(float), default=60.0, help="seconds to stream (default 60)"
    )
    demo.add_argument("--broker", help="use this broker instead of the embedded one")
    demo.add_argument("--data", help=".npz with X (and y) to replay")
    demo.add_argument(
        "--ui",
        type=port_number,
        default=0,
        metavar="PORT",
        help="port of the live page (default 0: any free one)",
    )
    demo.add_argument("--ui-host", default="127.0.0.1", help="address of the live page (default 127.0.0.1)")
    demo.add_argument("--no-ui", action="store_true", help="no live page, only the terminal table")
    demo.set_defaults(func=cmd_demo)

    from streaming.worker_cli import register as register_worker  # `rnnzoo worker`: the JetStream mode

    register_worker(subparsers)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(prog="rnnzoo", description="rnn-zoo streaming commands")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
