"""NATS JetStream layout for partitioned workers: subjects, the partition mapping, the stream, and a local server.

Devices publish readings to `sensors.<device>.imu` (or, through the NATS server's MQTT listener, to the MQTT
topic `sensors/<device>/imu`, which arrives as that subject). A subject mapping in the server's configuration
sends each device to one of P partitions by a hash of its device token:

    sensors.<device>.imu    →  part.<p>.sensors.<device>.imu        p = partition(P, 1)
    sensors.<device>.reset  →  part.<p>.sensors.<device>.reset      the same p: the hash is of the device

so one device always lands in one partition, and its resets land in the same stream as its readings, in the
order they were published (a reset drops the device's state between the readings before and after it). Each partition has a JetStream stream of its own
(`RNNZOO_READINGS_P<p>`, subject `part.<p>.sensors.*.imu`), read by one durable pull consumer that only the
partition's current owner uses. A stream per partition rather than one stream with a filtered consumer per
partition: NATS 2.9 scans a shared stream for each filtered pull (a server "readloop processing time" of
~3 s under a 100,000-reading backlog, and leases expired behind it), and in a cluster each partition's
stream can live on another server.

The mapping lives in the server's config because NATS 2.9 (Debian's) applies mappings there, before JetStream
sees a message; `mapping_config` writes the block to paste, `rnnzoo worker --print-mapping` prints it.

Example:
    >>> layout = Layout(partitions=8)
    >>> layout.partitioned("sensors.dev1.imu", 3)
    'part.3.sensors.dev1.imu'
    >>> print(mapping_config(layout))
    mappings = { "sensors.*.imu": "part.{{partition(8,1)}}.sensors.{{wildcard(1)}}.imu", "sensors.*.reset": "part.{{partition(8,1)}}.sensors.{{wildcard(1)}}.reset" }
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from typing import Any

from streaming.ports import free_port, free_ports, wait_port

PART_PREFIX = "part"
# The stream's description records P: workers started with another P would hash devices elsewhere.
DESCRIPTION = "rnnzoo readings, partitions={partitions}"


class LayoutError(ValueError):
    """A subject pattern, group name or partition count that cannot work; one line for the user."""


@dataclass(frozen=True)
class Layout:
    """Where a group's readings, checkpoints and leases live.

    Args:
        partitions: P, the number of partitions (fixed for the life of the stream).
        subject: the devices' subject pattern, with exactly one `*` token: the device id.
        stream: prefix of the partitions' JetStream streams (`<stream>_P<p>`).
        group: prefix of the consumers and the key-value buckets (one group per served model).
    """

    partitions: int = 8
    subject: str = "sensors.*.imu"
    stream: str = "RNNZOO_READINGS"
    group: str = "rnnzoo"

    def __post_init__(self) -> None:
        tokens = self.subject.split(".")
        if not 1 <= self.partitions <= 1024:
            raise LayoutError(f"--partitions must be 1..1024, got {self.partitions}")
        if tokens.count("*") != 1 or ">" in tokens or any(not t or " " in t for t in tokens):
            raise LayoutError(f"--subject must have exactly one '*' token (the device), got {self.subject!r}")
        for what, name in (("--stream", self.stream), ("--group", self.group)):
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
                raise LayoutError(f"{what} must be 1-64 letters, digits, '_' or '-', got {name!r}")

    @functools.cached_property
    def device_token(self) -> int:
        """Index of the device token in a partitioned subject (`part.<p>.` comes first)."""
        return 2 + self.subject.split(".").index("*")

    def stream_name(self, p: int) -> str:
        return f"{self.stream}_P{p}"

    def partition_filter(self, p: int) -> str:
        return f"{PART_PREFIX}.{p}.{self.subject}"

    @functools.cached_property
    def reset_subject(self) -> str | None:
        """The devices' reset subject: the readings' with its last token replaced by `reset` (None when the
        last token is the device's own, or already `reset`)."""
        tokens = self.subject.split(".")
        if tokens[-1] in ("*", "reset"):
            return None
        return ".".join(tokens[:-1] + ["reset"])

    def partition_filters(self, p: int) -> list[str]:
        """The subjects partition p's stream holds: its readings, and its devices' resets."""
        reset = self.reset_subject
        return [self.partition_filter(p)] + ([f"{PART_PREFIX}.{p}.{reset}"] if reset else [])

    def is_reset(self, subject: str) -> bool:
        """Whether a partitioned subject is a reset (the only other subject a partition's stream holds)."""
        return self.reset_subject is not None and subject.endswith(".reset")

    def partitioned(self, subject: str, p: int) -> str:
        return f"{PART_PREFIX}.{p}.{subject}"

    def consumer(self, p: int) -> str:
        return f"{self.group}-p{p}"

    @property
    def lease_bucket(self) -> str:
        return f"{self.group}-leases"

    @property
    def changelog_stream(self) -> str:
        """The stream of the partitions' checkpoint changelogs (`streaming.checkpoint`)."""
        return f"{self.group}_CHANGELOG"

    @property
    def changelog_subjects(self) -> str:
        return f"rnnzoo-changelog.{self.group}.*"

    def changelog_subject(self, p: int) -> str:
        return f"rnnzoo-changelog.{self.group}.{p}"

    def device_of(self, subject: str) -> str:
        """The device id of a partitioned subject; '' when the subject has another shape."""
        tokens = subject.split(".")
        return tokens[self.device_token] if len(tokens) == self._partitioned_tokens else ""

    @functools.cached_property
    def _partitioned_tokens(self) -> int:
        return len(self.subject.split(".")) + 2


def mapping_config(layout: Layout) -> str:
    """The nats-server `mappings` block that partitions the devices' subjects."""
    wildcard = 1  # the pattern's one '*': mapping functions number wildcards, not tokens
    entries = []
    for subject in filter(None, (layout.subject, layout.reset_subject)):
        target = subject.replace("*", f"{{{{wildcard({wildcard})}}}}")
        entries.append(
            f'"{subject}": "{PART_PREFIX}.{{{{partition({layout.partitions},{wildcard})}}}}.{target}"'
        )
    return "mappings = { " + ", ".join(entries) + " }"


def token_safe(name: str) -> str:
    """A name usable as one NATS subject token: separators, wildcards and whitespace become '_'."""
    return re.sub(r"[.*>\s\x00-\x1f\x7f]", "_", name) or "_"


async def ensure_stream(js: Any, layout: Layout, max_age_s: float | None = None) -> None:
    """Create the partitions' streams if missing; refuse ones made for another partition count."""
    from nats.js.api import StreamConfig
    from nats.js.errors import NotFoundError

    description = DESCRIPTION.format(partitions=layout.partitions)
    for p in range(layout.partitions):
        name = layout.stream_name(p)
        filters = layout.partition_filters(p)
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            config = StreamConfig(name=name, subjects=filters, description=description, max_age=max_age_s)
            await js.add_stream(config)
            continue
        if info.config.description != description:
            raise LayoutError(
                f"stream {name} was made with {info.config.description!r}; this worker has "
                f"partitions={layout.partitions} (a device would hash to another partition)"
            )
        if sorted(info.config.subjects or []) != sorted(filters):  # a stream from before resets existed
            info.config.subjects = filters
            await js.update_stream(info.config)


class LocalNatsServer:
    """A nats-server child process with JetStream, the partition mapping and (optionally) an MQTT listener, on
    free ports, storing in `store_dir`: for tests, benchmarks and trying the mode on one machine.

    `kill()` sends SIGKILL; `start()` again brings it back on the same ports with the same store.
    """

    def __init__(self, store_dir: str, layout: Layout, mqtt: bool = True, binary: str | None = None):
        self.store_dir = store_dir
        self.layout = layout
        self.port, self.mqtt_port = free_ports(2) if mqtt else (free_port(), None)
        self.binary = binary or find_nats_server()
        self.proc: subprocess.Popen | None = None
        self.config_path = os.path.join(store_dir, "nats.conf")
        os.makedirs(store_dir, exist_ok=True)
        lines = [
            f"listen: 127.0.0.1:{self.port}",
            "server_name: rnnzoo-local",
            f'jetstream {{ store_dir: "{os.path.join(store_dir, "js")}" }}',
            mapping_config(layout),
        ]
        if self.mqtt_port:
            lines.append(f"mqtt {{ listen: 127.0.0.1:{self.mqtt_port} }}")
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self._log = open(os.path.join(self.store_dir, "nats.log"), "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [self.binary, "-c", self.config_path], stdout=self._log, stderr=subprocess.STDOUT
        )
        wait_port(self.port, timeout)
        if self.mqtt_port:
            wait_port(self.mqtt_port, timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()


def find_nats_server() -> str:
    """The nats-server binary: $NATS_SERVER, then PATH, then Debian's /usr/sbin."""
    import shutil

    for candidate in (os.environ.get("NATS_SERVER"), shutil.which("nats-server"), "/usr/sbin/nats-server"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise FileNotFoundError("nats-server not found (Debian: apt-get install nats-server)")
