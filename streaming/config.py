"""Service settings: a TOML file (read with tomllib) → typed dataclasses, with one clear error per mistake.

Example config:

    [broker]
    url = "mqtt://127.0.0.1:1883"      # mqtts:// turns TLS on; user:password@host is accepted too
    qos = 1
    username = "rnnzoo"
    password_env = "MQTT_PASSWORD"       # read the password from the environment, not the file

    [service]
    max_batch = 256
    max_delay_ms = 5
    ttl_s = 3600
    snapshot_path = "state/snapshot.npz"
    snapshot_interval_s = 30
    output = "reading"                   # "reading", "batch" (one message per micro-batch) or "both"
    metrics_port = 9100                  # Prometheus /metrics, /healthz, /readyz (absent: no HTTP server)
    homeassistant = true                 # Home Assistant MQTT discovery (or a prefix: "homeassistant")

    [[bindings]]
    topic = "sensors/+/imu"              # the `+` level is the device id
    model = "activity-gru-causal"        # a zoo name or a path to a .keras file
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A setting is missing, unknown or of the wrong type; the message names it."""


@dataclass
class TLSSettings:
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False  # skip hostname verification (self-signed test brokers only)


@dataclass
class BrokerSettings:
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    password_env: str | None = None
    keepalive: int = 30
    connect_timeout_s: float = 10.0  # how long the first connection is retried before giving up
    qos: int = 0
    clean_session: bool | None = None  # None: a persistent session exactly when qos > 0
    tls: TLSSettings | None = None
    max_refusals: int = 3  # start-up gives up after this many refused connections (credentials, TLS)

    @property
    def safe_url(self) -> str:
        """The URL with any password replaced by '***': what logs and error messages show."""
        return redact_url(self.url)

    @property
    def host(self) -> str:
        return _parse_url(self.url)[0]

    @property
    def port(self) -> int:
        return _parse_url(self.url)[1]


@dataclass
class Binding:
    topic: str
    model: str
    mode: str = "auto"  # "step", "window" or "auto" (step when the model is causal, else window)
    window: int | None = None
    device_level: int | None = None  # topic level holding the device id; default: the first `+`
    reset_topic: str | None = None  # default: the topic with its last level replaced by "reset"
    output_topic: str = "predictions/{device}/{model}"
    name: str | None = None  # the {model} in output topics; default: the zoo name or the file's stem
    senml_names: list[str] | None = None


@dataclass
class ServiceSettings:
    max_batch: int = 256
    max_delay_ms: float = 5.0
    ttl_s: float | None = 3600.0
    max_devices: int = 100_000
    snapshot_path: str | None = None
    snapshot_interval_s: float = 30.0
    status_topic: str = "rnnzoo/status"
    status_interval_s: float = 10.0
    error_topic: str = "errors/{device}"
    output: str = "reading"
    batch_topic: str = "predictions/_batch/{model}"
    max_payload_bytes: int = 64 * 1024
    compute_dtype: str = "float64"
    runtime: str = "numpy"  # "onnx" / "litert": serve the model's exported step graph (rnn-zoo[export])
    max_device_id_bytes: int = 128  # a longer id costs its length in RAM and in every snapshot: refused
    max_new_devices_per_s: float | None = 1000.0  # admission cap, so fake ids cannot churn the table freely
    max_snapshot_bytes: int = 1 << 31  # a larger snapshot file is refused before it is read
    metrics_port: int | None = None  # serve /metrics, /healthz, /readyz on this port (0: any free port)
    metrics_host: str = "127.0.0.1"  # off the network unless asked
    homeassistant: bool | str | None = None  # MQTT discovery: true, or the discovery prefix
    homeassistant_remove: bool = False  # remove a device's sensors when its state is evicted or reset
    log_format: str = "text"  # "text" or "json" (one object per line)


@dataclass
class Settings:
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    bindings: list[Binding] = field(default_factory=list)


def redact_url(url: str) -> str:
    """``mqtt://user:secret@host`` → ``mqtt://user:***@host``; other URLs unchanged."""
    parts = urllib.parse.urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _parse_url(url: str) -> tuple[str, int, bool, str | None, str | None]:
    parts = urllib.parse.urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(f"broker url {redact_url(url)!r}: scheme must be mqtt:// or mqtts://")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as err:
        raise ConfigError(f"broker url {redact_url(url)!r}: {err}") from None
    if not parts.hostname:
        raise ConfigError(f"broker url {redact_url(url)!r} has no host")
    return parts.hostname, port, tls, parts.username, parts.password


def _build(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{where}] must be a table")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"[{where}] unknown setting {unknown[0]!r}; known: {', '.join(known)}")
    kwargs = {}
    for key, value in values.items():
        expected = known[key].type
        if key == "tls":
            value = _build(TLSSettings, value, f"{where}.tls")
        elif not _type_ok(value, str(expected)):
            raise ConfigError(f"[{where}] {key} = {value!r} should be {expected}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"[{where}] {err}") from None


def _type_ok(value: Any, expected: str) -> bool:
    if value is None:
        return "None" in expected
    checks = {"str": str, "int": int, "float": (int, float), "bool": bool, "list[str]": list}
    for name, kind in checks.items():
        if name in expected.replace(" | None", "").split(" | "):
            if isinstance(value, bool) and name != "bool":
                continue
            if isinstance(value, kind):
                return True
    return False


def validate(settings: Settings) -> Settings:
    """Check cross-field rules and fill derived defaults; raise ConfigError naming the problem."""
    broker, service = settings.broker, settings.service
    host, port, tls, user, password = _parse_url(broker.url)
    if tls and broker.tls is None:
        broker.tls = TLSSettings()
    if user and not broker.username:
        broker.username = urllib.parse.unquote(user)
    if password and not broker.password:
        broker.password = urllib.parse.unquote(password)
    if broker.password_env and not broker.password:
        if broker.password_env not in os.environ:
            raise ConfigError(f"[broker] password_env names {broker.password_env!r}, which is not set")
        broker.password = os.environ[broker.password_env]
    if broker.qos not in (0, 1):
        raise ConfigError(f"[broker] qos must be 0 or 1, got {broker.qos}")
    if service.max_batch < 1 or service.max_delay_ms < 0:
        raise ConfigError("[service] max_batch must be >= 1 and max_delay_ms >= 0")
    if service.output not in ("reading", "batch", "both"):
        raise ConfigError(f"[service] output must be 'reading', 'batch' or 'both', got {service.output!r}")
    if service.max_device_id_bytes < 1 or service.max_devices < 1 or broker.max_refusals < 1:
        raise ConfigError("[service] max_device_id_bytes and max_devices, [broker] max_refusals must be >= 1")
    if service.max_new_devices_per_s is not None and service.max_new_devices_per_s <= 0:
        raise ConfigError("[service] max_new_devices_per_s must be > 0 (or absent for no cap)")
    if service.compute_dtype not in ("float32", "float64"):
        raise ConfigError("[service] compute_dtype must be 'float32' or 'float64'")
    if service.runtime not in ("numpy", "onnx", "litert"):
        raise ConfigError(f"[service] runtime must be 'numpy', 'onnx' or 'litert', got {service.runtime!r}")
    if service.metrics_port is not None and not 0 <= service.metrics_port <= 65535:
        raise ConfigError(
            f"[service] metrics_port must be 0..65535 (0: any free port), got {service.metrics_port}"
        )
    if not service.metrics_host:
        raise ConfigError("[service] metrics_host must not be empty (127.0.0.1 keeps it off the network)")
    if service.log_format not in ("text", "json"):
        raise ConfigError(f"[service] log_format must be 'text' or 'json', got {service.log_format!r}")
    _validate_homeassistant(service)
    if not settings.bindings:
        raise ConfigError("no [[bindings]]: bind at least one topic filter to a model")
    for i, b in enumerate(settings.bindings):
        levels = b.topic.split("/")
        if b.device_level is None:
            if "+" not in levels:
                raise ConfigError(f"binding {i} topic {b.topic!r}: no '+' level to take the device id from")
            b.device_level = levels.index("+")
        if not 0 <= b.device_level < len(levels) or levels[b.device_level] != "+":
            raise ConfigError(f"binding {i}: device_level {b.device_level} is not a '+' level of {b.topic!r}")
        if "#" in levels[: b.device_level]:
            raise ConfigError(f"binding {i}: '#' before the device level in {b.topic!r}")
        if b.reset_topic is None and b.device_level < len(levels) - 1:
            b.reset_topic = "/".join(levels[: b.device_level + 1] + ["reset"])
        if b.mode not in ("auto", "step", "window"):
            raise ConfigError(f"binding {i}: mode must be 'auto', 'step' or 'window', got {b.mode!r}")
    return settings


def _validate_homeassistant(service: ServiceSettings) -> None:
    """`homeassistant = true` means the default prefix; a string is the prefix; false or absent: off."""
    if service.homeassistant is True:
        service.homeassistant = "homeassistant"
    elif service.homeassistant is False:
        service.homeassistant = None
    prefix = service.homeassistant
    if prefix is None:
        if service.homeassistant_remove:
            raise ConfigError("[service] homeassistant_remove is set but homeassistant (discovery) is off")
        return
    if not re.fullmatch(r"[^+#\x00-\x1f]+", prefix) or prefix.startswith("/") or prefix.endswith("/"):
        raise ConfigError(
            f"[service] homeassistant prefix {prefix!r} must be a topic without wildcards or a leading or "
            "trailing '/' (Home Assistant's default is 'homeassistant')"
        )
    if service.output == "batch":
        raise ConfigError(
            "[service] homeassistant needs a prediction topic per device: output 'reading' or 'both', not 'batch'"
        )


def from_dict(data: dict[str, Any]) -> Settings:
    unknown = sorted(set(data) - {"broker", "service", "bindings"})
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}]; known: [broker], [service], [[bindings]]")
    bindings = data.get("bindings", [])
    if not isinstance(bindings, list):
        raise ConfigError("bindings must be an array of tables: [[bindings]]")
    return validate(
        Settings(
            broker=_build(BrokerSettings, data.get("broker", {}), "broker"),
            service=_build(ServiceSettings, data.get("service", {}), "service"),
            bindings=[_build(Binding, b, f"bindings.{i}") for i, b in enumerate(bindings)],
        )
    )


def load(path: str | os.PathLike) -> Settings:
    """Read and validate a TOML config file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {os.fspath(path)!r} not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {os.fspath(path)!r} is not valid TOML: {err}") from None
    return from_dict(data)
