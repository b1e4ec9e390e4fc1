"""The live page on the command line: `--ui`, declared once for `rnnzoo serve` and `rnnzoo worker`, and the
feed and server it starts."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence

from streaming.live.feed import LiveFeed
from streaming.live.fleet import Fleet
from streaming.live.server import LiveServer
from streaming.ports import port_number


def add_ui_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --ui, --ui-host and --ui-token-env to a sub-command."""
    parser.add_argument(
        "--ui",
        type=port_number,
        nargs="?",
        const=0,
        metavar="PORT",
        help="serve the live page of the fleet on this port (no PORT: any free one; the URL is logged)",
    )
    parser.add_argument("--ui-host", default="127.0.0.1", help="address for --ui (default 127.0.0.1)")
    parser.add_argument(
        "--ui-token-env",
        metavar="VAR",
        help="environment variable holding a token the page's streams require",
    )


def ui_token(args: argparse.Namespace) -> str | None:
    """The token named by --ui-token-env (ValueError when that variable is not set or empty)."""
    name = getattr(args, "ui_token_env", None)
    if not name:
        return None
    token = os.environ.get(name)
    if not token:
        raise ValueError(f"--ui-token-env {name}: no such environment variable (or it is empty)")
    return token


def start_ui(
    args: argparse.Namespace,
    fleet_of: Callable[[], Fleet | None],
    models: dict[str, Sequence[str] | None],
) -> tuple[LiveFeed, LiveServer] | None:
    """When --ui was given: a feed declaring `models` and its server, started (None without --ui)."""
    if getattr(args, "ui", None) is None:
        return None
    feed = LiveFeed()
    for name, class_names in models.items():
        feed.add_model(name, class_names)
    try:
        server = LiveServer(feed, fleet_of(), args.ui_host, args.ui, ui_token(args))
    except OSError as err:
        raise OSError(f"--ui {args.ui_host}:{args.ui}: {err.strerror or err}") from None
    return feed, server.start()
