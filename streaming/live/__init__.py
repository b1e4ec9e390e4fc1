"""The live page: a person's view of the fleet, served by the service itself and pushed by Server-Sent Events.

Three parts, one way round, and the command line that starts them:

    feed.LiveFeed  the service's thread calls `predictions()` once per stepped wave and `error()` per refused
                   message; it keeps a bounded table of devices (id, model, step, last label and confidence or
                   last outputs, last seen, errors) and a ring of recent outputs for a bounded set of devices.
    fleet.ServiceFleet / fleet.WorkerFleet
                   fleet figures (readings/s, errors by reason, latency p50/p99, devices held, evictions) read
                   from what the process already counts: its `stats()` (streaming.core.Stats, the same shape
                   from both transports, what /metrics reads) and the service's latency histograms.
    server.LiveServer
                   a small threaded HTTP server: `/` the page (streaming/static, no CDN), `/events` one SSE
                   stream of table changes and fleet figures, `/events/device?id=…` one device's ring and new
                   points.
    cli            `--ui`, declared once for `rnnzoo serve` and `rnnzoo worker` (`add_ui_arguments`), and
                   `start_ui`, which starts a feed and its server when it was given.

Safe by default: it binds 127.0.0.1, answers GET only, refuses a Host header that is not the address it serves
on (DNS rebinding) and, with a token, refuses the data streams without it. The page renders every string that
came from a publisher with `textContent` and runs under a Content-Security-Policy that allows no inline script.
Memory is bounded: at most `max_devices` rows (the least recently seen go first), at most `history_devices`
rings of `ring` points.

Example:

    feed = LiveFeed()
    service.observer = feed                       # the service calls feed.predictions(...) / feed.error(...)
    server = LiveServer(feed, ServiceFleet(service), "127.0.0.1", 0).start()
    print(server.url)                             # open it in a browser
"""

from streaming.live.cli import add_ui_arguments, start_ui, ui_token
from streaming.live.feed import LiveFeed
from streaming.live.fleet import Fleet, ServiceFleet, StatsFleet, WorkerFleet, bucket_quantile
from streaming.live.server import STATIC_FILES, LiveServer

__all__ = [
    "STATIC_FILES",
    "Fleet",
    "LiveFeed",
    "LiveServer",
    "ServiceFleet",
    "StatsFleet",
    "WorkerFleet",
    "add_ui_arguments",
    "bucket_quantile",
    "start_ui",
    "ui_token",
]
