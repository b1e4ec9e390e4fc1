"""Log lines: a flood of bad payloads writes a bounded number of lines (and says how many it held back) while
every message is still counted; `--log-format json` lines carry ts, level, logger, msg and the error's fields."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from conftest import publisher, start_service, stop_service, tiny_model

from streaming.cli import main as streaming_main
from streaming.config import ConfigError, from_dict
from streaming.logs import JsonFormatter, LogBudget, configure

FLOOD = 10_000


@pytest.fixture
def captured():
    """(json lines, text lines) of everything the service logs, as the two formats write it."""
    logger = logging.getLogger("streaming")
    json_out, text_out = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(json_out), logging.StreamHandler(text_out)]
    handlers[0].setFormatter(JsonFormatter())
    handlers[1].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    level = logger.level
    logger.setLevel(logging.INFO)
    for h in handlers:
        logger.addHandler(h)
    yield json_out, text_out
    for h in handlers:
        logger.removeHandler(h)
    logger.setLevel(level)


def test_a_flood_of_bad_payloads_writes_a_bounded_log(mosquitto, captured) -> None:
    json_out, text_out = captured
    svc, thread = start_service(mosquitto.url, tiny_model())
    pub = publisher(mosquitto.port)
    for _ in range(FLOOD):
        pub.publish("sensors/flood/imu", b"{not json")
    deadline = time.monotonic() + 30
    while svc.error_reasons["not JSON"] < FLOOD and time.monotonic() < deadline:
        time.sleep(0.05)
    stop_service(svc, thread)  # the final flush writes the "suppressed" summary
    pub.loop_stop()
    # Mosquitto refuses control characters in topics, other brokers may not: a newline in a device id must
    # not start a forged line in a text log.
    svc._error("evil\n2026-12-02 12:00:00 ERROR forged", "", "wrong number of values", "expected 3", "tiny")

    assert svc.error_reasons["not JSON"] == FLOOD  # every message counted (and answered)...
    lines = [json.loads(line) for line in json_out.getvalue().splitlines()]
    assert len(lines) < 100, len(lines)  # ...but not every message logged
    refused = [x for x in lines if x.get("reason") == "not JSON"]
    assert len(refused) == 10
    for x in refused:
        assert set(x) >= {"ts", "level", "logger", "msg", "device", "model", "reason", "topic"}
        assert (x["level"], x["logger"], x["device"], x["model"]) == ("WARNING", "streaming", "flood", "tiny")
        assert x["topic"] == "sensors/flood/imu" and x["ts"].endswith("+00:00")
    summary = [x for x in lines if x.get("kind") == "not JSON"]
    assert len(summary) == 1 and summary[0]["suppressed"] == FLOOD - 10, summary
    assert "suppressed 9990 log lines of kind 'not JSON'" in summary[0]["msg"]
    evil = [x for x in lines if x.get("reason") == "wrong number of values"]
    assert evil[0]["device"] == "evil\n2026-12-02 12:00:00 ERROR forged"
    text = text_out.getvalue().splitlines()
    assert len(text) == len(lines) and not any(line.startswith("2026-12-02 12:00:00") for line in text)


def test_the_budget_allows_per_kind_and_summarises_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    budget = LogBudget(logging.getLogger("budget-test"), per_period=3, period_s=60.0)
    assert [budget.allow("a") for _ in range(5)] == [True, True, True, False, False]
    assert budget.allow("b")  # a flood of one kind does not silence another
    with caplog.at_level(logging.WARNING, logger="budget-test"):
        budget.flush()  # the period is not over: nothing yet
        assert caplog.records == []
        budget.flush(final=True)
    assert [(r.kind, r.suppressed) for r in caplog.records] == [("a", 2)]


def test_the_budget_reports_when_a_period_ends(caplog: pytest.LogCaptureFixture) -> None:
    budget = LogBudget(logging.getLogger("budget-test"), per_period=1, period_s=0.05)
    assert [budget.allow("a") for _ in range(4)] == [True, False, False, False]
    time.sleep(0.06)
    with caplog.at_level(logging.WARNING, logger="budget-test"):
        budget.flush()
    assert [(r.kind, r.suppressed) for r in caplog.records] == [("a", 3)]
    assert budget.allow("a")  # a new period


def test_configure_writes_json_lines() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("info", "json", out)
        logging.getLogger("streaming").warning(
            "refused %s", "x", extra={"device": "d1", "reason": "not JSON"}
        )
        logging.getLogger("streaming").debug("not shown")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    (line,) = out.getvalue().splitlines()
    got = json.loads(line)
    assert {k: got[k] for k in ("level", "logger", "msg", "device", "reason")} == {
        "level": "WARNING",
        "logger": "streaming",
        "msg": "refused x",
        "device": "d1",
        "reason": "not JSON",
    }


def test_log_format_is_checked(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError, match="log_format must be 'text' or 'json'"):
        from_dict({"service": {"log_format": "xml"}, "bindings": [{"topic": "s/+/i", "model": "tiny"}]})
    with pytest.raises(SystemExit) as exit_:
        streaming_main(["serve", "--model", "tiny", "--topic", "s/+/imu", "--log-format", "xml"])
    assert exit_.value.code == 2
    assert "argument --log-format: invalid choice: 'xml'" in capsys.readouterr().err.splitlines()[-1]
