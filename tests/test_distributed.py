"""Data-parallel training (`zoo.distributed`): refusals, batch shares, and — in subprocesses on JAX with the
CPU presented as several devices — the same model on 1 and 2 devices, and two processes training one model.

The quick tests need no devices. The slow ones start JAX subprocesses (``XLA_FLAGS=
--xla_force_host_platform_device_count=N KERAS_BACKEND=jax``; the flag must be set before JAX starts) and
print the figures docs/training-devices.md quotes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from rnnzoo.cli import main
from streaming.ports import free_port
from zoo import distributed
from zoo.distributed import GlobalBatches, Placement, check_request

ROOT = Path(__file__).resolve().parents[1]
# Measured by test_two_virtual_devices_train_like_one (it prints them; 2026-12-07, JAX 0.10.2, this 2-core
# machine): after 8 epochs the largest weight difference between 1 and 2 devices was 6.0e-8 and the largest
# relative loss difference 2.2e-7 (float32 sums in another order); two processes matched one process feeding
# the same batches to 2 devices exactly (0.0). The bounds leave room for other CPUs and longer runs.
WEIGHT_TOLERANCE = 1e-5
LOSS_RTOL = 1e-5


# ---- quick: no devices needed ---------------------------------------------------------------------------------


def test_requests_that_cannot_work_are_refused_in_one_sentence() -> None:
    assert check_request("all", 16, present=4) == 4 and check_request(2, 16, present=4) == 2
    refusals = {
        ("all", 16, 1, 1): "only one device is present",
        (2, 16, 1, 1): "only one device is present",
        (8, 16, 4, 1): "8 devices asked for, 4 present",
        (3, 16, 4, 1): "does not split evenly over 3 devices",
        (1, 16, 4, 1): "devices=1 is plain one-device training",
        (0, 16, 4, 1): "at least 2",
        ("two", 16, 4, 1): "whole number or 'all'",
        (2, 16, 4, 2): "trains on every device of every process",
    }
    for (devices, batch, present, processes), reason in refusals.items():
        with pytest.raises(ValueError, match=reason) as err:
            check_request(devices, batch, present, processes)
        assert "\n" not in str(err.value)
    assert distributed.parse_devices("ALL") == "all" and distributed.parse_devices("4") == 4
    with pytest.raises(ValueError, match="--devices must be"):
        distributed.parse_devices("two")


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="the refusal of a non-JAX backend")
def test_the_tensorflow_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="needs the JAX backend .* set KERAS_BACKEND=jax"):
        distributed.data_parallel(2, 16)
    assert distributed.data_parallel(None, 16) == Placement()  # no request: plain one-device training


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="the refusal of a non-JAX backend")
def test_cli_refuses_devices_in_one_line_before_loading_data(tmp_path, capsys) -> None:
    cases = {
        ("--devices", "2"): "needs the JAX backend",
        ("--devices", "two"): "--devices must be a whole number",
        ("--coordinator", "127.0.0.1:1234"): "need --devices all",
    }
    for extra, reason in cases.items():
        assert main(["train", "activity-gru-causal", "--out", str(tmp_path), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and reason in err, err
    assert not any(tmp_path.iterdir())  # refused before anything was trained or written
    for extra, reason in list(cases.items())[:2]:  # rnnzoo fit: refused before the table is read
        assert (
            main(["fit", str(tmp_path / "no.csv"), "--target", "y", "--out", str(tmp_path / "o"), *extra])
            == 2
        )
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and reason in err, err
    assert not any(tmp_path.iterdir())


def test_inactive_placement_passes_fit_arguments_through() -> None:
    x, y = np.zeros((5, 3, 2)), np.zeros(5)
    inputs, dropped = Placement().fit_inputs(x, y, batch_size=2, validation_data=(x, y))
    assert inputs["x"] is x and inputs["y"] is y and inputs["validation_data"][0] is x and dropped == {}


def test_processes_share_each_global_batch_and_the_last_batch_splits_evenly() -> None:
    x = np.arange(23, dtype="float32").reshape(23, 1, 1)
    y, w = np.arange(23), np.ones(23)
    whole = GlobalBatches(x, y, w, batch_size=8, devices=2, shuffle_seed=3)
    halves = [GlobalBatches(x, y, w, 8, devices=2, processes=2, process_id=p, shuffle_seed=3) for p in (0, 1)]
    assert whole.n == 22 and len(whole) == 3  # 23 % 8 = 7 rows in the last batch: one left out, 6 split
    for epoch in range(2):
        for i in range(len(whole)):
            xb, yb, wb = whole[i]
            shares = [h[i] for h in halves]
            assert np.array_equal(np.concatenate([s[1] for s in shares]), yb) and len(yb) % 2 == 0
            assert np.array_equal(np.concatenate([s[0] for s in shares]), xb) and wb.shape == yb.shape
        first = whole[0][1].copy()
        for d in (whole, *halves):
            d.on_epoch_end()
        assert epoch or not np.array_equal(first, whole[0][1])  # a fresh shuffle each epoch, alike everywhere
    assert sorted(np.concatenate([whole[i][1] for i in range(3)])) == sorted(whole.order)
    kept, dropped = Placement(distribution=object(), devices=2, processes=2, process_id=1).fit_inputs(
        x, y, batch_size=8, validation_data=(x[:5], y[:5])
    )
    assert dropped == {"train": 1, "validation": 1} and isinstance(kept["x"], GlobalBatches)


# ---- slow: JAX subprocesses ------------------------------------------------------------------------------------


def _jax_env(devices: int) -> dict[str, str]:
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _run_script(code: str, devices: int, timeout: int = 600) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=_jax_env(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


PARITY = """
    import json, sys
    import numpy as np, keras, zoo
    out = sys.argv[1] if len(sys.argv) > 1 else {out!r}
    kw = dict(verbose=0, units=8, layers=1, epochs=8, patience=8, refit=True)
    cards = {{n: zoo.train("activity-gru-causal", out=f"{{out}}/{{n}}", devices=d, **kw)
             for n, d in (("one", None), ("two", 2))}}
    trimmed = zoo.train("activity-gru-causal", out=f"{{out}}/three", devices=3, **(kw | dict(epochs=1, batch_size=9)))
    def folder(n): return f"{{out}}/{{n}}/activity-gru-causal"
    hist = {{n: json.load(open(folder(n) + "/history.json")) for n in cards}}
    models = {{n: keras.models.load_model(folder(n) + "/model.keras") for n in cards}}
    wdiff = max(float(np.abs(a - b).max()) for a, b in zip(models["one"].get_weights(), models["two"].get_weights()))
    keys = ("loss", "val_loss", "refit_loss")
    rel = max(abs(a - b) / abs(a) for k in keys for a, b in zip(hist["one"][k], hist["two"][k], strict=True))
    refusals = []
    for devices, batch in ((4, 8), (2, 9)):
        try:
            zoo.train("activity-gru-causal", out=f"{{out}}/no", devices=devices, verbose=0, epochs=1, batch_size=batch)
        except ValueError as e:
            refusals.append(str(e))
    print(json.dumps(dict(
        weight_diff=wdiff, loss_rel_diff=rel, epochs=[len(h["loss"]) for h in hist.values()],
        refit_epochs=[len(h["refit_loss"]) for h in hist.values()],
        device=cards["two"].recipe.device, recipe=cards["two"].recipe.details.get("data_parallel"),
        one_device=cards["one"].recipe.device, one_details=sorted(cards["one"].recipe.details),
        parity=cards["two"].streaming.max_abs_diff_vs_keras,
        trimmed=trimmed.recipe.details["data_parallel"], refusals=refusals,
    )))
"""


@pytest.mark.slow  # three tiny trainings in a JAX subprocess (~40 s on 2 cores)
def test_two_virtual_devices_train_like_one(tmp_path) -> None:
    """Same seed, same global batch (8): 1 device vs 2 virtual CPU devices give the same loss curves (training,
    validation, and the refit on training + validation) and weights to float32 rounding; the card records the
    count and kind; the last batch is cut to split evenly; impossible requests are refused in one sentence."""
    r = _run_script(PARITY.format(out=str(tmp_path)), devices=3)
    print(
        f"1 vs 2 devices, 8 epochs: max |weight diff| {r['weight_diff']:.2e}, max rel loss diff "
        f"{r['loss_rel_diff']:.2e}"
    )
    assert r["epochs"] == [8, 8] and r["refit_epochs"][0] == r["refit_epochs"][1] >= 1  # refit on train + val
    assert r["weight_diff"] <= WEIGHT_TOLERANCE and r["loss_rel_diff"] <= LOSS_RTOL
    assert r["device"].startswith("2 × cpu (virtual: XLA host-platform devices), data parallel")
    dp = r["recipe"]
    assert (
        dp["devices"] == 2
        and dp["device_kind"] == "cpu"
        and dp["processes"] == 1
        and dp["virtual_cpu_devices"]
    )
    assert dp["engine"].startswith("keras.distribution.DataParallel")
    assert "data_parallel" not in r["one_details"] and "×" not in r["one_device"]  # one device: as before
    assert r["parity"] <= 1e-5  # the shipped copy steps like Keras
    # Global batch 9 over 3 devices: 32 % 9 = 5 rows in the last training batch, 2 left out; 8 validation, 2.
    assert r["trimmed"]["sequences_left_out_so_batches_split_evenly"] == {"train": 2, "validation": 2}
    assert r["trimmed"]["devices"] == 3
    assert r["refusals"] == [
        "4 devices asked for, 3 present (on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N (set "
        "before the first JAX import) presents it as N devices)",
        "the global batch (9) does not split evenly over 2 devices: choose a batch size that is a multiple of 2",
    ]


REFERENCE = """
    import dataclasses, json
    import zoo, zoo.training as training
    real = training.data_parallel
    training.data_parallel = lambda d, b: dataclasses.replace(real(d, b), feed="global")
    zoo.train("activity-gru-causal", out={out!r}, devices=2, **{kw!r})
    print(json.dumps({{}}))
"""


@pytest.mark.slow  # two processes + a reference run (~60 s on 2 cores)
def test_two_processes_on_localhost_train_one_model(tmp_path) -> None:
    """`rnnzoo train --devices all --coordinator 127.0.0.1:PORT --num-processes 2 --process-id I`: two JAX
    processes (one CPU device each, gloo collectives) train one model; both end with the same weights, equal
    to one process feeding the same global batches to 2 devices."""
    kw = dict(verbose=0, units=4, layers=1, epochs=3)
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "rnnzoo.cli",
        "train",
        "activity-gru-causal",
        "--units",
        "4",
        "--layers",
        "1",
    ]
    cmd += ["--epochs", "3"]
    cmd += ["--devices", "all", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    cmd += ["--out", str(tmp_path / "mp")]
    env = _jax_env(1)
    procs = [
        subprocess.Popen(
            [*cmd, "--process-id", str(i)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    try:
        _run_script(REFERENCE.format(out=str(tmp_path / "ref"), kw=kw), devices=2)
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:  # a failed run must not leave a process waiting for its peer
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert f"wrote {tmp_path / 'mp' / 'process-1' / 'activity-gru-causal'}" in outs[1][0]
    folders = {
        "process 0": tmp_path / "mp" / "activity-gru-causal",
        "process 1": tmp_path / "mp" / "process-1" / "activity-gru-causal",
        "reference": tmp_path / "ref" / "activity-gru-causal",
    }
    weights = {k: keras.models.load_model(f / "model.keras").get_weights() for k, f in folders.items()}
    losses = {k: json.loads((f / "history.json").read_text())["loss"] for k, f in folders.items()}
    diff = {
        k: max(float(np.abs(a - b).max()) for a, b in zip(weights["process 0"], weights[k], strict=True))
        for k in ("process 1", "reference")
    }
    print(
        f"2 processes vs each other and vs 1 process on 2 devices: max |weight diff| {diff}, losses {losses}"
    )
    assert diff["process 1"] == 0.0 and diff["reference"] <= WEIGHT_TOLERANCE
    assert np.allclose(losses["process 0"], losses["reference"], rtol=LOSS_RTOL)
    card = json.loads((folders["process 0"] / "card.json").read_text())["recipe"]
    assert card["data_parallel"]["processes"] == 2 and card["data_parallel"]["devices"] == 2
    assert not card["data_parallel"]["virtual_cpu_devices"] and "in 2 processes" in card["device"]


class _Batches(keras.utils.PyDataset):
    """A task's own batches of uneven size (as zoo.tasks.translation's length buckets are)."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs = 0

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple:
        n = (7, 4)[index]
        return np.arange(n * 2, dtype="float32").reshape(n, 2), np.arange(n)

    def on_epoch_end(self) -> None:
        self.epochs += 1


def test_a_tasks_own_batches_are_cut_to_a_multiple_of_the_devices_and_shared() -> None:
    inner = _Batches()
    one = distributed.ShareBatches(inner, devices=2)
    shares = [distributed.ShareBatches(inner, devices=2, processes=2, process_id=p) for p in (0, 1)]
    assert len(one) == 2 and [len(one[i][1]) for i in range(2)] == [6, 4]
    assert np.array_equal(np.concatenate([s[0][1] for s in shares]), one[0][1])
    one.on_epoch_end()
    assert inner.epochs == 1
    inputs, dropped = Placement(distribution=object(), devices=2).fit_inputs(
        inner, None, batch_size=None, validation_data=inner
    )
    assert isinstance(inputs["x"], distributed.ShareBatches) and inputs["shuffle"] is False and dropped == {}


def _bfloat16_copy(model: keras.Model) -> keras.Model:
    """``model`` rebuilt with every layer under the mixed_bfloat16 policy (bfloat16 arithmetic), same weights."""

    def swap(node: object) -> object:
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                return {**node, "config": {**node["config"], "name": "mixed_bfloat16"}}
            return {k: swap(v) for k, v in node.items()}
        return [swap(v) for v in node] if isinstance(node, list) else node

    copy = model.__class__.from_config(swap(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


# Runs scripts/train_gpu.py as on the GPU machine, where TensorFlow is not installed (../shared/docs/gpu.md):
# any import of it fails, and the run must not have imported it.
WITHOUT_TENSORFLOW = """
import runpy, sys

class NoTensorFlow:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf2onnx", "tensorboard"):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")
        return None

sys.meta_path.insert(0, NoTensorFlow)
sys.argv = ["scripts/train_gpu.py", *sys.argv[1:]]
try:
    runpy.run_path("scripts/train_gpu.py", run_name="__main__")
except SystemExit as e:
    assert not [m for m in sys.modules if m.split(".")[0] == "tensorflow"], "tensorflow was imported"
    raise
"""


@pytest.mark.slow  # two one-epoch trainings in a JAX subprocess (~45 s on 2 cores)
def test_gpu_retraining_script_runs_end_to_end_on_a_tiny_budget(tmp_path) -> None:
    """scripts/train_gpu.py --tiny on this CPU, with TensorFlow hidden as on the GPU machine: models, cards and
    the timing table (JSON + markdown); under mixed_bfloat16 the shipped copy is float32 and keeps step
    parity, which bfloat16 arithmetic would not."""
    from zoo.step import StepModel

    names = ["activity-gru-causal", "co2-forecast-gru"]
    cmd = [sys.executable, "-c", WITHOUT_TENSORFLOW, "--tiny", "--precision", "mixed_bfloat16", *names]
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    proc = subprocess.run([*cmd, "--out", str(tmp_path)], env=env, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = json.loads((tmp_path / "timings.json").read_text())
    rows = {r["model"]: r for r in table["rows"]}
    assert list(rows) == names and "--tiny" in table["command"]
    for name, r in rows.items():
        card = json.loads((tmp_path / name / "card.json").read_text())
        assert r["epochs_run"] == card["recipe"]["epochs_run"] == 1 and r["fit_seconds"] > 0
        assert r["sequences_per_s"] > 0 and r["card_sequences_per_s"] > 0 and "throughput_vs_card" not in r
        assert r["precision"] == "mixed_bfloat16" and "mixed_bfloat16" in card["recipe"]["precision"]
        assert r["step_parity"] <= 1e-5 and r["metric"] in ("accuracy", "mase") and r["card_device"]
    md = (tmp_path / "timings.md").read_text()
    assert md.count("\n| activity-gru-causal |") == 1 and "| model | device |" in md
    model = keras.models.load_model(tmp_path / names[0] / "model.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    x = zoo_test_data(names[0])
    bf16 = float(
        np.abs(StepModel.from_keras(model).run(x) - _bfloat16_copy(model).predict(x, verbose=0)).max()
    )
    print(f"{names[0]}: step engine vs the same weights under bfloat16 arithmetic: max |diff| {bf16:.2e}")
    assert bf16 > 1e-5


def zoo_test_data(name: str) -> np.ndarray:
    import zoo

    return zoo.test_data(name)[0]


FIT_PARITY = """
    import json, sys
    import numpy as np, keras, zoo
    sys.path.insert(0, "tests")
    from pathlib import Path
    from fit_data import italy_power
    table = italy_power(Path({out!r}) / "italy.csv", days=120)
    kw = dict(target="half_year", id="day", time_col="hour", units=8, epochs=4, patience=4, verbose=0,
              say=lambda s: None)
    res = {{n: zoo.fit(table, out=f"{out}/{{n}}", devices=d, **kw) for n, d in (("one", None), ("two", 2))}}
    w = [r.model.get_weights() for r in res.values()]
    wdiff = max(float(np.abs(a - b).max()) for a, b in zip(*w))
    h = [r.history for r in res.values()]
    rel = max(abs(a - b) / abs(a) for k in ("loss", "val_loss") for a, b in zip(h[0][k], h[1][k], strict=True))
    two = res["two"].card
    print(json.dumps(dict(weight_diff=wdiff, loss_rel_diff=rel, device=two.recipe.device,
                          dp=two.recipe.details.get("data_parallel"), parity=two.streaming.max_abs_diff_vs_keras)))
"""


@pytest.mark.slow  # two tiny fits in a JAX subprocess (~40 s on 2 cores)
def test_fit_on_two_virtual_devices_trains_like_one(tmp_path) -> None:
    """`zoo.fit(..., devices=2)` on a user's table: the same weights and loss curves as one device (same seed and
    global batch), the card records the placement, and the fitted model streams like Keras."""
    r = _run_script(FIT_PARITY.format(out=str(tmp_path)), devices=2)
    print(
        f"fit, 1 vs 2 devices: max |weight diff| {r['weight_diff']:.2e}, max rel loss diff {r['loss_rel_diff']:.2e}"
    )
    assert r["weight_diff"] <= WEIGHT_TOLERANCE and r["loss_rel_diff"] <= LOSS_RTOL
    assert r["device"].startswith("2 × cpu (virtual") and r["dp"]["devices"] == 2
    assert r["parity"] <= 1e-5
