"""Export every causal shipped model as a step graph in every format, measure each with its own runtime, and
write the measurements into the model's card (``exports``); print a table and write it as JSON.

    python scripts/export_all.py                      # all causal models, all formats, cards updated
    python scripts/export_all.py kjv-char-lstm --no-write --formats onnx

Per model and format: parity with Keras on whole sequences over ≥ 10,000 streamed steps (the test split, topped
up with validation/training sequences where it is shorter), per-step latency at batch 1 and 64 (median of 300
calls, one thread), file size, sha256, op list (LiteRT: builtin ops only, checked). The float32 variants of
the ONNX and SavedModel graphs are measured too, for the table (the cards record the default, float64 inside).
Beside the float LiteRT graph, its quantised variants (``--quantize dynamic int8``: dynamic-range, and
full-integer calibrated on training-split steps) are measured the same way, plus the card's headline test
metrics computed from each quantised graph's streamed outputs next to the float32 LiteRT graph's.
The exports themselves go to a temporary folder: they are made on demand (`rnnzoo export`), not shipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

import zoo
from zoo import cards
from zoo.export import (
    DEFAULT_COMPUTE,
    FILES,
    FORMATS,
    QUANTIZATIONS,
    digest,
    export_step,
    format_version,
    size_bytes,
    state_slots,
)
from zoo.export.measure import MIN_PARITY_STEPS, latency_us, parity, parity_data
from zoo.export.runtimes import StepRuntime, load_runtime
from zoo.step import StepModel

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "export_all.json"
COMPUTE = {"dynamic": "float32, int8 weights", "int8": "int8"}  # quantised graphs' arithmetic inside
INITIAL_STATE = "zeros: every state tensor starts at 0, as Keras starts its recurrences"


class _NumpyRuntime(StepRuntime):
    """The numpy step engine behind the runtime call, for the table's reference latency."""

    format = "numpy"

    def __init__(self, step_model: StepModel):
        slots = state_slots(step_model)
        super().__init__(
            [s.name for s in slots], [s.width for s in slots], step_model.n_features, step_model.n_outputs
        )
        self.step_model = step_model

    def __call__(self, x, states):  # type: ignore[no-untyped-def]
        row = np.concatenate([states[n] for n in self.state_names], axis=1)
        y, new = self.step_model.step(x, row)
        bounds = np.cumsum([0, *self.state_widths])
        return y, {n: new[:, a:b] for n, a, b in zip(self.state_names, bounds[:-1], bounds[1:], strict=True)}


def _ops(path: Path, fmt: str) -> list[str]:
    if fmt == "onnx":
        import onnx

        return sorted({node.op_type for node in onnx.load(str(path)).graph.node})
    if fmt == "litert":
        from zoo.export.tf_graph import litert_ops

        return litert_ops(path.read_bytes())
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    skip = {"Placeholder", "Identity", "NoOp", "StatefulPartitionedCall", "PartitionedCall", "Const"}
    return sorted({n.op for n in nodes} - skip)


def _runtime_version(fmt: str) -> str:
    if fmt == "onnx":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"
    if fmt == "litert":
        try:
            from importlib.metadata import version

            return f"ai-edge-litert {version('ai-edge-litert')} interpreter"
        except Exception:  # noqa: BLE001
            return "tf.lite interpreter"
    import tensorflow as tf

    return f"TensorFlow {tf.__version__} SavedModel signature"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return cpu


def measure(
    runtime: StepRuntime, data: object, calls: int
) -> tuple[float, float, float]:  # (parity, b1 µs, b64 µs)
    return parity(runtime, data), latency_us(runtime, 1, calls), latency_us(runtime, 64, calls)  # type: ignore[arg-type]


def export_model(
    name: str, formats: list[str], workdir: Path, calls: int, min_steps: int, quantize: list[str]
) -> dict:
    """Export and measure one model; returns the table rows and the card's exports block."""
    from zoo.export import step_model_of

    card = zoo.card(name)
    step_model = step_model_of(name)
    model = zoo.load(name)
    start = time.perf_counter()
    data = parity_data(name, model, min_steps)
    slots = state_slots(step_model)
    rows = []
    numpy_rt = _NumpyRuntime(step_model)
    np_parity, np_b1, np_b64 = measure(numpy_rt, data, calls)
    rows.append(dict(model=name, format="numpy (zoo.step)", compute="float64", size=None, builtin_only=None,
                     parity=np_parity, b1=np_b1, b64=np_b64))  # fmt: skip
    block: dict[str, cards.Export] = {}
    inputs = [cards.StateTensor("x", [step_model.n_features], "float32")]
    inputs += [cards.StateTensor(s.name, [s.width], "float32") for s in slots]
    outputs = [cards.StateTensor("y", [step_model.n_outputs], "float32")]
    outputs += [cards.StateTensor(f"{s.name}_out", [s.width], "float32") for s in slots]
    for fmt in formats:
        variants = [DEFAULT_COMPUTE[fmt]] + (["float32"] if DEFAULT_COMPUTE[fmt] != "float32" else [])
        for compute in variants:
            folder = workdir / name / compute
            path = export_step(step_model, fmt, folder, compute, doc=f"rnn-zoo {name}: one step")
            runtime = load_runtime(path, fmt, threads=1)
            assert runtime.state_names == [s.name for s in slots], (name, fmt, runtime.state_names)
            diff, b1, b64 = measure(runtime, data, calls)
            ops = _ops(path, fmt)
            builtin = None
            if fmt == "litert":  # every op a builtin: Flex ops show as FlexXxx, custom ones as CUSTOM
                builtin = not any(op.startswith("Flex") or op in ("CUSTOM", "DELEGATE") for op in ops)
            rows.append(dict(model=name, format=fmt, compute=compute, size=size_bytes(path),
                             builtin_only=builtin, parity=diff, b1=b1, b64=b64))  # fmt: skip
            if compute != DEFAULT_COMPUTE[fmt]:
                continue
            block[fmt] = cards.Export(
                format=fmt,  # type: ignore[arg-type]
                file=path.name,
                sha256=digest(path),
                reproducible=fmt != "savedmodel",
                file_size_bytes=size_bytes(path),
                format_version=format_version(fmt, compute),
                compute_dtype=compute,
                ops=ops,
                inputs=inputs,
                outputs=outputs,
                initial_state=INITIAL_STATE,
                step=card.state_spec.step_input,
                max_abs_diff_vs_keras=diff,
                parity_steps=data.steps,
                parity_data=data.description,
                latency_us_batch1=round(b1, 1),
                latency_us_batch64=round(b64, 1),
                latency_note=f"median of {calls} calls, 1 thread, {_runtime_version(fmt)}, {_machine()}",
                builtin_only=builtin,
            )
    if "litert" in formats and quantize:
        block |= _quantized(name, step_model, block["litert"], data, workdir, calls, quantize, rows)
    print(f"{name}: {data.steps:,} parity steps, {time.perf_counter() - start:.0f} s", flush=True)
    return {"rows": rows, "exports": block}


def _quantized(
    name: str,
    step_model: StepModel,
    float_export: cards.Export,
    data: object,
    workdir: Path,
    calls: int,
    quantize: list[str],
    rows: list[dict],
) -> dict[str, cards.Export]:
    """The quantised LiteRT step graphs beside the float one: parity, latency and the card's headline test
    metrics computed from each graph's outputs (and, for comparison, from the float32 LiteRT graph's)."""
    from zoo.export import quantize as q
    from zoo.export.tf_graph import QUANTIZATION_NOTES
    from zoo.registry import get_spec
    from zoo.tasks import TASKS

    spec = get_spec(name)
    prepared = TASKS[spec.task].prepare(spec.recipe.seed, spec.head, spec.recipe.batch_size)
    folder = workdir / name / "float32"
    float_metrics = q.test_metrics(name, load_runtime(folder / FILES["litert"], "litert"), prepared)
    representative = None
    if "int8" in quantize:
        sequences = q.training_sequences(name)
        representative = q.representative(step_model, sequences)
        calibration = (
            f"{q.CALIBRATION_SAMPLES} (reading, state) steps of {len(sequences)} training-split sequences, "
            "states from the float step engine"
        )
    out: dict[str, cards.Export] = {}
    for mode in quantize:
        path = export_step(step_model, "litert", folder, None, "", mode, representative)
        runtime = load_runtime(path, "litert", threads=1)
        diff, b1, b64 = measure(runtime, data, calls)
        ops = _ops(path, "litert")
        builtin = not any(op.startswith("Flex") or op in ("CUSTOM", "DELEGATE") for op in ops)
        metrics = q.test_metrics(name, runtime, prepared)
        rows.append(dict(model=name, format=f"litert {mode}", compute=COMPUTE[mode], size=size_bytes(path),
                         builtin_only=builtin, parity=diff, b1=b1, b64=b64,
                         test_metrics=metrics, float_test_metrics=float_metrics))  # fmt: skip
        note = QUANTIZATION_NOTES[mode] + (f"; calibration: {calibration}" if mode == "int8" else "")
        out[f"litert-{mode}"] = dataclasses.replace(
            float_export,
            file=path.name,
            sha256=digest(path),
            file_size_bytes=size_bytes(path),
            format_version=format_version("litert", "float32", mode),
            compute_dtype=COMPUTE[mode],
            ops=ops,
            max_abs_diff_vs_keras=diff,
            latency_us_batch1=round(b1, 1),
            latency_us_batch64=round(b64, 1),
            builtin_only=builtin,
            quantization=note,
            test_metrics=metrics,
            float_test_metrics=float_metrics,
        )
    return out


PARITY_SENTENCES = 200


def export_translation_model(name: str, formats: list[str], workdir: Path, calls: int) -> dict:
    """A translation model's encoder and one decoder step per format: greedy decoding of the first
    PARITY_SENTENCES test sentences driven by the exported graphs (numpy loop) vs Translator's (Keras) greedy
    output — exact token-sequence match rate, max |diff| of the encoder outputs / the decoder's
    log-probabilities (Keras's log(max(p, 1e-12)) at the same inputs) — and the latency of one call."""
    import tensorflow as tf

    from zoo.export.seq2seq import FILES, GRAPHS, GraphRuntime, export_encoder_decoder, greedy
    from zoo.export.sequence import ONNX_OPSET
    from zoo.translation import BOS, EOS, MAX_SOURCE_TOKENS, load_translator

    start = time.perf_counter()
    translator = load_translator(name)
    src = translator.encode_sources(list(zoo.test_data(name)[0][:PARITY_SENTENCES])).astype(np.int32)
    reference = translator.decode_ids(src)
    enc, state = (np.asarray(a) for a in translator._encoder(src, training=False))
    units, width, vocab = state.shape[1], enc.shape[2], len(translator.target)
    rows, block = [], {}
    for fmt in formats:
        paths = export_encoder_decoder(name, fmt, workdir / name / fmt)
        encoder, step = (GraphRuntime(paths[g], fmt) for g in GRAPHS)
        tokens, log_probs = greedy(encoder, step, src, translator.max_target)
        match = float(np.mean([a == b for a, b in zip(tokens, reference, strict=True)]))
        got = encoder(source=src)
        enc_diff = max(
            float(np.abs(got["encoder_outputs"] - enc).max()),
            float(np.abs(got["decoder_state"] - state).max()),
        )
        # Keras's decoder step at the graph's own inputs (its tokens, </s> once ended; Keras's own states).
        prev, keras_state, done = np.full((len(src), 1), BOS, "int32"), state, np.zeros(len(src), bool)
        step_diff = 0.0
        for lp in log_probs:
            probs, keras_state = (
                np.asarray(a) for a in translator._step([prev, keras_state, enc, src], training=False)
            )
            step_diff = max(step_diff, float(np.abs(np.log(np.maximum(probs, 1e-12)) - lp).max()))
            nxt = lp.argmax(-1).astype("int32")
            nxt[done] = EOS
            done |= nxt == EOS
            prev = nxt[:, None]
        steps = len(log_probs)

        # One call of each graph on the first sentence, then on the first 64.
        def step_inputs(n: int) -> dict:
            return {
                "prev_token": src[:n, 0],
                "decoder_state": state[:n],
                "encoder_outputs": enc[:n],
                "source": src[:n],
            }

        lat = {
            "encoder": [_call_latency(encoder, {"source": src[:n]}, calls) for n in (1, 64)],
            "decoder_step": [_call_latency(step, step_inputs(n), calls) for n in (1, 64)],
        }
        ops = {g: _sequence_ops(paths[g], fmt) for g in GRAPHS}
        builtin = {
            g: (
                not any(op.startswith("Flex") or op in ("CUSTOM", "DELEGATE", "WHILE") for op in ops[g])
                if fmt == "litert"
                else None
            )
            for g in GRAPHS
        }
        s = MAX_SOURCE_TOKENS if fmt == "litert" else -1
        version = {
            "savedmodel": f"SavedModel by keras.export.ExportArchive (signature 'serve'); Keras {keras_version()}, TensorFlow {tf.__version__}",
            "litert": "LiteRT flatbuffer (TFLite schema 3), TFLITE_BUILTINS only; recurrences unroll=True, S = "
            f"{MAX_SOURCE_TOKENS} fixed; TensorFlow {tf.__version__}",
            "onnx": f"ONNX opset {ONNX_OPSET} by tf2onnx {_tf2onnx_version()} from the SavedModel",
        }[fmt]
        io = {
            "encoder": (
                [cards.StateTensor("source", [s], "int32")],
                [cards.StateTensor("encoder_outputs", [s, width], "float32"), cards.StateTensor("decoder_state", [units], "float32")],
                "encoder outputs and decoder_state vs Keras's encoder (Translator)",
                enc_diff,
                "one call: source ids [B, S], 0-padded (Translator pads to 40)",
                len(src),
            ),
            "decoder_step": (
                [cards.StateTensor("prev_token", [], "int32"), cards.StateTensor("decoder_state", [units], "float32"),
                 cards.StateTensor("encoder_outputs", [s, width], "float32"), cards.StateTensor("source", [s], "int32")],
                [cards.StateTensor("log_probs", [vocab], "float32"), cards.StateTensor("decoder_state_out", [units], "float32")],
                "log_probs vs log(max(p, 1e-12)) of Keras's decoder step (Translator) at the same tokens",
                step_diff,
                "one target token: the previous token id (<s> = 2 first) -> log-probabilities of the next",
                steps * len(src),
            ),
        }  # fmt: skip
        for g in GRAPHS:
            inputs, outputs, what, diff, step_doc, n = io[g]
            rows.append(dict(model=name, format=f"{fmt} {g}", compute="float32", size=size_bytes(paths[g]),
                             builtin_only=builtin[g], parity=diff, b1=lat[g][0], b64=lat[g][1],
                             greedy_match_rate=match))  # fmt: skip
            block[f"{fmt}-{g.replace('_', '-')}"] = cards.Export(
                format=fmt,  # type: ignore[arg-type]
                file=FILES[fmt][g],
                sha256=digest(paths[g]),
                reproducible=False,
                file_size_bytes=size_bytes(paths[g]),
                format_version=version,
                compute_dtype="float32",
                ops=ops[g],
                inputs=inputs,
                outputs=outputs,
                initial_state="decoder_state: the encoder's output; the first prev_token is <s> (id 2)",
                step=step_doc,
                max_abs_diff_vs_keras=diff,
                parity_steps=n,
                parity_data=f"greedy decoding of the first {len(src)} test sentences: {what}",
                latency_us_batch1=round(lat[g][0], 1),
                latency_us_batch64=round(lat[g][1], 1),
                latency_note=f"median of {calls} calls on 1 / 64 test sentences, 1 thread, {_runtime_version(fmt)}, "
                f"{_machine()}",
                builtin_only=builtin[g],
                graph="encoder" if g == "encoder" else "decoder-step",
                greedy_match_rate=match,
            )
        print(
            f"{name} {fmt}: greedy match {match:.1%}, encoder {enc_diff:.1e}, log-probs {step_diff:.1e}",
            flush=True,
        )
    print(f"{name}: encoder + decoder step, {time.perf_counter() - start:.0f} s", flush=True)
    return {"rows": rows, "exports": block}


def _call_latency(runtime: object, inputs: dict, calls: int) -> float:
    for _ in range(3):
        runtime(**inputs)  # type: ignore[operator]
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        runtime(**inputs)  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)


def export_sequence_model(name: str, formats: list[str], workdir: Path, calls: int) -> dict:
    """Whole-sequence graphs of a non-causal model: parity with Keras on the whole test split (one call per
    64 sequences), latency of one call on 1 and 64 test sequences."""
    from zoo.export.sequence import LITERT_ROUTE, ONNX_OPSET, SequenceRuntime, export_sequence

    model = zoo.load(name)
    start = time.perf_counter()
    x = np.asarray(zoo.test_data(name)[0])
    reference = np.asarray(model.predict(x, verbose=0, batch_size=256), np.float32)
    rows, block = [], {}
    inputs = [
        cards.StateTensor("x", [-1 if d is None else int(d) for d in model.inputs[0].shape[1:]], x.dtype.name)
    ]
    outputs = [
        cards.StateTensor("y", [-1 if d is None else int(d) for d in model.outputs[0].shape[1:]], "float32")
    ]
    for fmt in formats:
        path = export_sequence(name, fmt, workdir / name)
        runtime = SequenceRuntime(path, fmt)
        diff = float(np.abs(runtime.predict(x) - reference).max())
        b1, b64 = (_sequence_latency(runtime, x[:b], calls) for b in (1, 64))
        ops = _sequence_ops(path, fmt)
        builtin = (
            not any(op.startswith("Flex") or op in ("CUSTOM", "DELEGATE") for op in ops)
            if fmt == "litert"
            else None
        )
        rows.append(dict(model=name, format=f"{fmt} sequence", compute="float32", size=size_bytes(path),
                         builtin_only=builtin, parity=diff, b1=b1, b64=b64))  # fmt: skip
        import tensorflow as tf

        version = {
            "savedmodel": f"SavedModel by keras.Model.export (signature 'serve'); Keras {keras_version()}, "
            f"TensorFlow {tf.__version__}",
            "litert": f"LiteRT flatbuffer (TFLite schema 3), TFLITE_BUILTINS only; {LITERT_ROUTE} "
            f"(T = {x.shape[1]}); TensorFlow {tf.__version__}",
            "onnx": f"ONNX opset {ONNX_OPSET} by tf2onnx {_tf2onnx_version()} from the SavedModel",
        }[fmt]
        shape_in = [x.shape[1], *inputs[0].shape[1:]] if fmt == "litert" else inputs[0].shape
        block[f"{fmt}-sequence"] = cards.Export(
            format=fmt,  # type: ignore[arg-type]
            file=path.name,
            sha256=digest(path),
            reproducible=False,
            file_size_bytes=size_bytes(path),
            format_version=version,
            compute_dtype="float32",
            ops=ops,
            inputs=[cards.StateTensor("x", shape_in, x.dtype.name)],
            outputs=outputs,
            initial_state="none: the graph runs whole sequences, its recurrences start at zeros inside",
            step=f"one call: whole sequences [B, T, ...] ({'T fixed' if fmt == 'litert' else 'any T'})",
            max_abs_diff_vs_keras=diff,
            parity_steps=int(np.prod(x.shape[:2])),
            parity_data=f"test split, whole sequences: {x.shape[0]} sequences x {x.shape[1]} steps",
            latency_us_batch1=round(b1, 1),
            latency_us_batch64=round(b64, 1),
            latency_note=f"median of {calls} calls on 1 / 64 whole test sequences, 1 thread, {_runtime_version(fmt)}, "
            f"{_machine()}",
            builtin_only=builtin,
            graph="sequence",
        )
    print(f"{name}: whole sequences, {time.perf_counter() - start:.0f} s", flush=True)
    return {"rows": rows, "exports": block}


def keras_version() -> str:
    import keras

    return keras.__version__


def _tf2onnx_version() -> str:
    from importlib.metadata import version

    return version("tf2onnx")


def _sequence_latency(runtime: object, x: np.ndarray, calls: int) -> float:
    for _ in range(3):
        runtime(x)  # type: ignore[operator]
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        runtime(x)  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)


def _sequence_ops(path: Path, fmt: str) -> list[str]:
    if fmt != "savedmodel":
        return _ops(path, fmt)
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    skip = {"Placeholder", "Identity", "NoOp", "StatefulPartitionedCall", "PartitionedCall", "Const"}
    return sorted({n.op for n in nodes} - skip)


def print_table(rows: list[dict]) -> None:
    head = ("model", "format", "compute", "size", "builtin-only", "max |diff| vs Keras", "b1 µs", "b64 µs")
    lines = [head]
    for r in rows:
        lines.append((
            r["model"], r["format"], r["compute"],
            "-" if r["size"] is None else f"{r['size'] / 1024:.0f} KiB",
            {None: "-", True: "yes", False: "NO"}[r["builtin_only"]],
            f"{r['parity']:.1e}", f"{r['b1']:.0f}", f"{r['b64']:.0f}",
        ))  # fmt: skip
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    for i, line in enumerate(lines):
        print("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in rows:
        if r.get("test_metrics"):
            pairs = ", ".join(
                f"{k} {v} (float {r['float_test_metrics'].get(k)})" for k, v in r["test_metrics"].items()
            )
            print(f"{r['model']} {r['format']}: test {pairs}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="models (default: every causal shipped model)")
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    ap.add_argument("--no-write", action="store_true", help="measure only; leave the cards as they are")
    ap.add_argument("--calls", type=int, default=300, help="timed calls per latency figure")
    ap.add_argument("--min-steps", type=int, default=MIN_PARITY_STEPS)
    ap.add_argument("--json", type=Path, default=RESULTS)
    ap.add_argument(
        "--quantize",
        nargs="*",
        default=list(QUANTIZATIONS),
        choices=QUANTIZATIONS,
        help="quantised LiteRT step graphs to make beside the float one (default: dynamic int8; none: --quantize)",
    )
    ap.add_argument(
        "--sequence",
        action="store_true",
        help="whole-sequence graphs of the non-causal models (translation: its encoder and decoder step)",
    )
    args = ap.parse_args()
    if args.sequence:
        names = args.names or [n for n in zoo.list_models() if not zoo.card(n).state_spec.steppable]
        if args.json == RESULTS:
            args.json = RESULTS.with_name("export_sequence.json")
    else:
        names = args.names or [n for n in zoo.list_models() if zoo.card(n).state_spec.steppable]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if args.sequence and zoo.card(name).kind == "translation":
                result = export_translation_model(name, args.formats, Path(tmp), args.calls)
            elif args.sequence:
                result = export_sequence_model(name, args.formats, Path(tmp), args.calls)
            else:
                result = export_model(
                    name, args.formats, Path(tmp), args.calls, args.min_steps, args.quantize
                )
            rows += result["rows"]
            if not args.no_write:
                folder = cards.model_dir(name)
                card = cards.read_card(folder)
                merged = dict(card.exports or {}) | result["exports"]
                before = cards.sha256(folder / cards.MODEL_FILE)
                cards.write_card(folder, dataclasses.replace(card, exports=merged))
                assert cards.sha256(folder / cards.MODEL_FILE) == before  # model.keras is never touched
    print_table(rows)
    write_results(args.json, names, rows)


def write_results(path: Path, names: list[str], rows: list[dict]) -> None:
    """Put ``rows`` into the results file ``path`` in place of any earlier rows of ``names`` (the other models'
    rows stay, so re-measuring one model keeps the table whole)."""
    kept = []
    if path.is_file():
        kept = [r for r in json.loads(path.read_text())["rows"] if r["model"] not in names]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": _machine(), "rows": kept + rows}, indent=1) + "\n")
    print(f"wrote {path} ({len(rows)} rows measured now, {len(kept)} kept)")


if __name__ == "__main__":
    main()
