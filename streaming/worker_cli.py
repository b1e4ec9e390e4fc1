"""`rnnzoo worker` on the command line: its flags (`register`), their checks (`cmd_worker`: the NATS URL, the
credentials from environment variables, the layout), and running one worker in this process (`run_worker`) or
several as child processes (`run_workers`). The worker itself is `streaming.worker`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
from typing import Any

from streaming.flags import add_serving_arguments, finite_positive
from streaming.jetstream import Layout, LayoutError, mapping_config, token_safe
from streaming.state import SnapshotError
from streaming.worker import Worker, WorkerSettings

log = logging.getLogger("streaming.worker")  # the worker's own logger, as in streaming.worker


def load_served(spec: str, runtime: str = "numpy", mode: str = "step", window: int | None = None) -> Any:
    """The model in step mode (the TensorFlow-free numpy engine, or its exported ONNX / LiteRT step graph), or
    in window mode (Keras on each device's last `window` readings, as `rnnzoo serve --mode window`)."""
    from streaming.models import serve_model

    return serve_model(spec, mode=mode, window=window, isolate=True, runtime=runtime)


def run_worker(settings: WorkerSettings, ui: argparse.Namespace | None = None) -> int:
    """Run one worker in this process until SIGTERM or SIGINT; its exit status (1: the client went deaf).
    `ui`: the parsed command line, for --ui (the live page, streaming.live)."""
    served = load_served(settings.model, settings.runtime, settings.mode, settings.window)
    worker = Worker(settings, served)
    from streaming.live import WorkerFleet, start_ui

    live = start_ui(ui, lambda: WorkerFleet(worker), {served.name: served.class_names}) if ui else None
    if live is not None:
        worker.observer = live[0]
        log.info("live page on %s", live[1].url)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    try:
        asyncio.run(main())
    finally:
        if live is not None:
            live[1].stop()
    return worker.exit_code


def run_workers(n: int, argv: list[str]) -> int:
    """Start `n` worker processes with the same arguments and wait; SIGTERM/SIGINT are passed on."""
    procs = [
        subprocess.Popen([sys.executable, "-m", "streaming", "worker", *argv, "--workers", "1"])
        for _ in range(n)
    ]

    def forward(signum: int, frame: Any) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [proc.wait() for proc in procs]
    return max(codes, default=0)


# -- command line ---------------------------------------------------------------------------------------------


def default_group(model: str | None) -> str:
    """The group of a model's workers: its name (a file's base name), in the characters a bucket allows."""
    base = os.path.splitext(os.path.basename(model or "model"))[0]
    return re.sub(r"[^A-Za-z0-9_-]", "_", base)[:64] or "model"


def _fail(message: str) -> int:
    print(f"rnnzoo worker: error: {message}", file=sys.stderr)
    return 2


def cmd_worker(args: argparse.Namespace) -> int:
    from streaming.logs import configure

    configure(args.log_level, "text")
    try:
        layout = Layout(args.partitions, args.subject, args.stream, args.group or default_group(args.model))
    except LayoutError as err:
        return _fail(str(err))
    if args.print_mapping:
        print(mapping_config(layout))
        return 0
    problem = check_nats_url(args.nats)
    if problem:
        return _fail(problem)
    if not args.model:
        return _fail("give --model NAME (a zoo model or a .keras file)")
    if args.workers > 1:
        argv = sys.argv[1:]
        if "worker" in argv:
            argv = argv[argv.index("worker") + 1 :]
        argv = _without_workers(argv)
        return run_workers(args.workers, argv)
    from streaming.models import ModelError
    from zoo.step import NotStepable

    settings = WorkerSettings(
        nats_url=args.nats,
        model=args.model,
        layout=layout,
        worker_id=token_safe(args.worker_id) if args.worker_id else "",
        lease_ttl_s=args.lease_ttl,
        checkpoint_interval_s=args.checkpoint_interval,
        max_batch=args.max_batch,
        max_devices=args.max_devices,
        ttl_s=args.ttl,
        runtime=args.runtime,
        mode=args.mode,
        window=args.window,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        max_new_devices_per_s=args.max_new_devices_per_s,
        max_device_id_bytes=args.max_device_id_bytes,
        max_age_s=args.max_age,
        connect_timeout_s=args.connect_timeout,
        connect_options=connect_options(args),
    )
    try:
        return run_worker(settings, args)
    except (ModelError, NotStepable, LayoutError, SnapshotError, ValueError, OSError) as err:
        return _fail(str(err))
    except KeyboardInterrupt:
        return 130
    return 0


def check_nats_url(url: str) -> str | None:
    """Why `url` cannot be a NATS server URL (one line, password redacted), or None."""
    from urllib.parse import urlsplit

    from streaming.natsconn import safe_url

    shown = safe_url(url) if "://" in url else url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        return f"--nats {shown!r}: {err}"
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        return f"--nats must be nats://HOST:PORT (tls:// for TLS), got {shown!r}"
    if port == 0:
        return f"--nats {shown!r}: port must be 1..65535"
    return None


def connect_options(args: argparse.Namespace) -> dict[str, Any]:
    """nats-py connect options from the credential and TLS flags; secrets come from environment variables,
    never from the command line (where `ps` shows them)."""
    options: dict[str, Any] = {}
    for flag, key in (("password_env", "password"), ("token_env", "token")):
        name = getattr(args, flag)
        if name:
            if name not in os.environ:
                raise ValueError(f"--{flag.replace('_', '-')} {name}: no such environment variable")
            options[key] = os.environ[name]
    if args.user:
        options["user"] = args.user
    if args.tls_ca:
        import ssl

        try:
            options["tls"] = ssl.create_default_context(cafile=args.tls_ca)
        except (OSError, ssl.SSLError) as err:
            raise ValueError(f"--tls-ca {args.tls_ca}: {err}") from None
    return options


def _without_workers(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--workers":
            skip = True
            continue
        if a.startswith("--workers="):
            continue
        out.append(a)
    return out


_positive = finite_positive


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `worker` to the rnnzoo command line."""
    p = subparsers.add_parser(
        "worker",
        help="serve a model on NATS JetStream, partitioned across workers, exactly-once state",
        description="Join a worker group on NATS JetStream: own partitions of the devices, step their readings, "
        "checkpoint state with the stream sequence (see docs/streaming.md, 'Scale out').",
    )
    p.add_argument(
        "--nats", default="nats://127.0.0.1:4222", help="nats://HOST:PORT (tls://HOST:PORT: TLS only)"
    )
    p.add_argument("--model", help="zoo model name, .keras file or model folder (step mode)")
    p.add_argument("--partitions", type=_positive(int), default=8, help="P, fixed for the stream's life (8)")
    p.add_argument("--subject", default="sensors.*.imu", help="readings subject; its '*' is the device id")
    p.add_argument(
        "--stream", default="RNNZOO_READINGS", help="prefix of the partitions' streams (<stream>_P<p>)"
    )
    p.add_argument("--group", help="worker group (consumers and buckets); default: the model name")
    p.add_argument("--workers", type=_positive(int), default=1, help="worker processes to start here")
    p.add_argument("--worker-id", help="this worker's id (default host-pid)")
    p.add_argument(
        "--lease-ttl",
        type=_positive(float, 0.5, 86400),
        default=6.0,
        help="seconds a dead worker's partitions wait (0.5..86400)",
    )
    p.add_argument(
        "--checkpoint-interval",
        type=_positive(float, 0.01, 3600),
        default=1.0,
        help="seconds between checkpoints (0.01..3600)",
    )
    p.add_argument("--max-batch", type=_positive(int), default=1024, help="readings fetched at once")
    # --max-devices, --ttl, …, --runtime, --mode, --window, --metrics-port/host: shared with `rnnzoo serve`
    add_serving_arguments(p, with_defaults=True)
    p.add_argument(
        "--max-age",
        type=_positive(float, 1, 10 * 365 * 86400),
        help="seconds the stream keeps readings (new stream only)",
    )
    p.add_argument(
        "--connect-timeout",
        type=_positive(float, 0.1, 86400),
        default=10.0,
        help="give up start-up if the server is unreachable this long (10)",
    )
    p.add_argument("--user", help="NATS user name")
    p.add_argument("--password-env", help="environment variable holding the NATS password")
    p.add_argument("--token-env", help="environment variable holding the NATS token")
    p.add_argument("--tls-ca", help="CA certificate file for a tls:// server")
    p.add_argument(
        "--print-mapping", action="store_true", help="print the nats-server mappings block and exit"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    from streaming.live import add_ui_arguments

    add_ui_arguments(p)  # --ui, --ui-host, --ui-token-env: the live page
    p.set_defaults(func=cmd_worker)
    p.error = _one_line_error  # type: ignore[method-assign]


def _one_line_error(message: str) -> None:
    """argparse's error for `rnnzoo worker`: one line (no usage block) and exit status 2."""
    print(f"rnnzoo worker: error: {message} (see rnnzoo worker --help)", file=sys.stderr)
    sys.exit(2)
