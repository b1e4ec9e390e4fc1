"""The serving install for an edge box: `pip install "rnn-zoo[serve]"` into a fresh virtual environment holds no
Keras, TensorFlow or data package, and its `rnnzoo serve` streams a causal zoo model from the step engine the
model ships — predictions equal to Keras, checked by `rnnzoo simulate --check` run from the full install.

The install's size and the serving process's RSS are printed (`pytest -m slow -s tests/test_edge_install.py`);
docs/deploy.md records them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
from test_wheel import _build_wheel

from zoo import cards

MODEL = "activity-gru-causal"
# What the serving install may hold: the package and the `serve` extra's requirements (besides pip itself).
SERVING_SET = {"rnn-zoo", "numpy", "paho-mqtt", "nats-py", "prometheus-client", "threadpoolctl"}
# The Keras, TensorFlow and data packages of the full install, none of which may be importable there.
PIP = ("pip", "setuptools", "pkg_resources", "_distutils_hack")  # what `python -m venv` brings
HEAVY = ("tensorflow", "keras", "aeon", "sktime", "pandas", "scipy", "sklearn", "music21", "librosa", "jax")


def _causal_streamable() -> list[str]:
    import zoo

    return [n for n in zoo.list_models(capability="stream") if zoo.card(n).streaming.mode == "step"]


def test_every_causal_model_that_streams_ships_its_step_engine() -> None:
    from zoo.step.shipped import read_engine

    names = _causal_streamable()
    assert names
    for name in names:
        card = cards.read_card(cards.model_dir(name))
        engine = read_engine(cards.model_dir(name), card.sha256)  # sha256-checked, tied to this model.keras
        assert engine is not None, f"{name}: no step engine (python scripts/step_engines.py {name})"
        assert (engine.n_features, engine.state_size) == (
            card.preprocessing.n_features,
            card.state_spec.engine_state_size,
        )


def test_a_stale_or_altered_shipped_engine_is_never_served(tmp_path: Path) -> None:
    import shutil

    from streaming.models import ModelError, export_in_child
    from zoo.step.shipped import ENGINE_FILE, ENGINE_META, read_engine

    folder = tmp_path / MODEL
    shutil.copytree(cards.model_dir(MODEL), folder)
    card = cards.read_card(folder)
    engine, meta = export_in_child(str(folder), "auto", "float32")  # a model folder: its shipped engine
    assert meta["name"] == MODEL and meta["class_names"] == card.class_names
    assert (
        engine.compute_dtype.name == "float32"
        and engine.fingerprint == read_engine(folder, card.sha256).fingerprint
    )
    assert read_engine(folder, "0" * 64) is None  # an engine read from another model file: not this model's
    (folder / ENGINE_META).write_text("{not json")
    assert read_engine(folder, card.sha256) is None
    shutil.copy2(cards.model_dir(MODEL) / ENGINE_META, folder / ENGINE_META)
    data = bytearray((folder / ENGINE_FILE).read_bytes())
    data[-100] ^= 1
    (folder / ENGINE_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="modified or corrupted"):
        export_in_child(str(folder), "auto", "float64")


@pytest.mark.slow
def test_shipped_engines_hold_exactly_what_keras_weights_give() -> None:
    import numpy as np
    from conftest import load_script

    import zoo
    from zoo.step import StepModel
    from zoo.step.shipped import read_engine

    same_arrays = load_script("step_engines").same_arrays
    for name in _causal_streamable():
        model, sha = zoo.load(name), zoo.card(name).sha256
        shipped = read_engine(cards.model_dir(name), sha)
        assert same_arrays(shipped, StepModel.from_keras(model)), name
        assert same_arrays(shipped.with_compute_dtype(np.float32), StepModel.from_keras(model, np.float32)), (
            name
        )


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding the wheel of this checkout with its `serve` extra. The serving set
    is pinned to the versions the full install tests with; pip takes them from its index or cache."""
    root = tmp_path_factory.mktemp("edge")
    wheel = _build_wheel(root / "dist")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pins = [f"{d}=={version(d)}" for d in sorted(SERVING_SET - {"rnn-zoo"})]
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[serve]", *pins],
        check=True,
        capture_output=True,
    )
    return venv


def _env(tmp: Path) -> dict[str, str]:
    """The edge process's environment: nothing from this checkout on its path, a step cache of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return env | {"RNNZOO_CACHE": str(tmp / "cache")}


def _site_packages(venv: Path) -> Path:
    (site,) = (venv / "lib").glob("python3*/site-packages")
    return site


def _du_kib(path: Path) -> int:
    return int(
        subprocess.run(["du", "-sk", str(path)], check=True, capture_output=True, text=True).stdout.split()[0]
    )


@pytest.mark.slow  # builds a wheel and a virtual environment: a minute or more
def test_serving_install_holds_the_serving_set_only_and_builds_every_causal_model(
    edge: Path, tmp_path: Path
) -> None:
    python = str(edge / "bin" / "python")
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"], check=True, capture_output=True, text=True
    )
    installed = {d["name"].lower().replace("_", "-") for d in json.loads(listed.stdout)} - {
        "pip",
        "setuptools",
    }
    assert installed == SERVING_SET
    for module in HEAVY:
        probe = subprocess.run([python, "-I", "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode == 1 and "ModuleNotFoundError" in probe.stderr, module

    # Every causal zoo model that streams gets its engine from the folder it ships in: no child, no Keras.
    names = _causal_streamable()
    code = (
        "import json, sys; from streaming.models import serve_model; "
        f"served = {{n: serve_model(n, mode='step', isolate=True) for n in {names!r}}}; "
        "print(json.dumps({'sizes': {n: s.engine.state_size for n, s in served.items()}, "
        "'heavy': sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow'))}))"
    )
    done = subprocess.run(
        [python, "-c", code], cwd=tmp_path, env=_env(tmp_path), check=True, capture_output=True, text=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["sizes"] == {
        n: cards.read_card(cards.model_dir(n)).state_spec.engine_state_size for n in names
    }
    assert not (tmp_path / "cache" / "step").exists()  # nothing was built, so nothing was cached

    # What needs the full install is refused in one line that says what to install: a window-mode model (it runs
    # Keras on each window), a bare .keras file (its engine is built with Keras), a command of the full install.
    import shutil

    shutil.copy2(cards.model_dir(MODEL) / cards.MODEL_FILE, tmp_path / "mine.keras")
    serve = ["serve", "--topic", "sensors/+/imu", "--model"]
    for argv, install in [
        ([*serve, "activity-bigru"], "rnn-zoo[full]"),
        ([*serve, str(tmp_path / "mine.keras")], "rnn-zoo[full]"),
        ([*serve, MODEL, "--runtime", "onnx"], "rnn-zoo[export]"),
        (["evaluate", MODEL], "rnn-zoo[full]"),
        (["train", MODEL], "rnn-zoo[full]"),
    ]:
        refused = subprocess.run(
            [str(edge / "bin" / "rnnzoo"), *argv],
            cwd=tmp_path,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
        )
        assert refused.returncode == 2, (argv, refused.stderr)
        assert refused.stderr.strip().count("\n") == 0 and install in refused.stderr, (argv, refused.stderr)
    for command in (["--help"], ["list"], ["worker", "--help"]):
        subprocess.run(
            [str(edge / "bin" / "rnnzoo"), *command],
            cwd=tmp_path,
            env=_env(tmp_path),
            check=True,
            capture_output=True,
        )

    site = _site_packages(edge)
    print(
        f"\nserving install: site-packages {_du_kib(site) / 1024:.1f} MiB "
        f"(the zoo's models {_du_kib(site / 'zoo' / 'saved_models') / 1024:.1f} MiB, "
        f"numpy {sum(_du_kib(p) for p in site.glob('numpy*')) / 1024:.1f} MiB, "
        f"pip and setuptools {sum(_du_kib(p) for p in site.iterdir() if p.name.split('-')[0] in PIP) / 1024:.1f} MiB)"
    )


@pytest.mark.slow
def test_edge_serve_streams_as_keras(edge: Path, mosquitto, tmp_path: Path) -> None:
    import psutil

    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        serve = subprocess.Popen(
            [str(edge / "bin" / "rnnzoo"), "serve", "--model", MODEL, "--topic", "sensors/+/imu"]
            + ["--broker", mosquitto.url, "--metrics-port", "0"],  # prometheus_client, from the serve extra
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 60
        while "connected to" not in log.read_text():
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        # The reference side needs Keras and the test data: the full install runs it, against the edge service.
        check = subprocess.run(
            [sys.executable, "-m", "rnnzoo", "simulate", "--broker", mosquitto.url, "--model", MODEL]
            + ["--devices", "8", "--rate", "50", "--sequences", "1", "--check"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert check.returncode == 0 and "-> OK" in check.stdout, check.stdout + check.stderr
        # The edge install's own simulator replays a file of readings (no dataset package there).
        import numpy as np

        import zoo

        np.savez(tmp_path / "readings.npz", X=zoo.test_data(MODEL)[0][:2])
        replay = subprocess.run(
            [str(edge / "bin" / "rnnzoo"), "simulate", "--broker", mosquitto.url, "--model", MODEL]
            + [
                "--data",
                str(tmp_path / "readings.npz"),
                "--devices",
                "2",
                "--rate",
                "50",
                "--sequences",
                "1",
            ],
            cwd=tmp_path,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert replay.returncode == 0 and "received 200 predictions; missing 0" in replay.stdout, (
            replay.stdout + replay.stderr
        )
        process = psutil.Process(serve.pid)
        rss_mib = process.memory_info().rss / 2**20
        maps = Path(f"/proc/{serve.pid}/maps").read_text()
        assert "tensorflow" not in maps and "keras" not in maps
        assert rss_mib < 150, rss_mib
        print(
            f"\nedge `rnnzoo serve --model {MODEL}` --metrics-port 0 after 1,000 readings: RSS {rss_mib:.1f} MiB; {check.stdout.strip()}"
        )
    finally:
        serve.terminate()
        serve.wait(15)
    assert not (tmp_path / "cache" / "step").exists()  # the shipped engine, not one built and cached


@pytest.mark.slow
def test_edge_worker_streams_what_the_full_install_computes(edge: Path, tmp_path: Path) -> None:
    """`rnnzoo worker` of the serving install, on a real nats-server: every prediction is the number the full
    install's engine publishes (rounded alike), and within 1e-5 of Keras on the whole sequences."""
    import asyncio

    import numpy as np
    import paho.mqtt.client as mqtt
    import psutil
    from conftest import offline

    import zoo
    from streaming.jetstream import Layout, LocalNatsServer, find_nats_server
    from zoo.step import StepModel

    try:
        find_nats_server()
    except FileNotFoundError:
        pytest.skip("no nats-server binary")
    from test_jetstream import PARTITIONS, _wait_for_stream

    server = LocalNatsServer(str(tmp_path / "nats"), Layout(PARTITIONS, group="edge"))
    server.start()
    log = tmp_path / "worker.log"
    got: list[tuple[str, dict]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sink")
    sub.on_message = lambda c, u, m: got.append((m.topic, json.loads(m.payload)))
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="devices")
    with open(log, "w") as out:
        worker = subprocess.Popen(
            [str(edge / "bin" / "rnnzoo"), "worker", "--nats", server.url, "--model", MODEL]
            + ["--partitions", str(PARTITIONS), "--group", "edge"],
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    x = zoo.test_data(MODEL)[0][:3]  # three held-out recordings, one device each
    try:
        asyncio.run(_wait_for_stream(server.url))
        sub.connect("127.0.0.1", server.mqtt_port)
        sub.subscribe(f"predictions/+/{MODEL}", qos=1)
        sub.loop_start()
        pub.connect("127.0.0.1", server.mqtt_port)
        pub.loop_start()
        time.sleep(0.5)
        for t in range(x.shape[1]):
            for d in range(len(x)):
                pub.publish(f"sensors/d{d}/imu", json.dumps(x[d, t].tolist()), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 60
        while len(got) < x.shape[0] * x.shape[1] and time.monotonic() < deadline:
            time.sleep(0.05)
        rss_mib = psutil.Process(worker.pid).memory_info().rss / 2**20
        print(f"\nedge `rnnzoo worker --model {MODEL}` after {len(got)} predictions: RSS {rss_mib:.1f} MiB")
    finally:
        pub.loop_stop()
        sub.loop_stop()
        worker.terminate()
        worker.wait(15)
        server.stop()
    assert len(got) == x.shape[0] * x.shape[1], log.read_text()[-2000:]
    model = zoo.load(MODEL)
    published = np.round(
        StepModel.from_keras(model).run(x).astype(np.float64), 8
    )  # as streaming.core encodes
    keras_out = offline(model, x)
    for d in range(len(x)):
        rows = sorted(
            (p for topic, p in got if topic == f"predictions/d{d}/{MODEL}"), key=lambda p: p["step"]
        )
        outputs = np.array([p["outputs"] for p in rows])
        assert np.array_equal(outputs, published[d]), d
        np.testing.assert_allclose(outputs, keras_out[d], atol=1e-5)
    assert not (tmp_path / "cache" / "step").exists()
