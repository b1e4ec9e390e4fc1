"""``rnnzoo``: list, inspect, train, evaluate and run the zoo's models (and stream them: ``serve``…).

Thin by design: parse arguments, call the public API, print. Every expected failure — unknown model, tampered
file, wrong input shape, bad argument — ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import zoo
from zoo import cards, require
from zoo.cards import IntegrityError
from zoo.registry import Capability


class UserError(Exception):
    """A problem the user can fix; printed as one line."""


# Upper bounds on work a single command may ask for: beyond them a typo turns into minutes of CPU.
MAX_BEAM = 64
MAX_TEMPERATURE = 100.0
MIN_AUDIO_SECONDS = 0.05


def _finite_temperature(value: float, option: str = "--temperature", allow_zero: bool = False) -> None:
    import math

    low_ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and low_ok and value <= MAX_TEMPERATURE):
        low = ">= 0" if allow_zero else "above 0"
        raise UserError(
            f"{option} must be a finite number {low} and at most {MAX_TEMPERATURE:g} (got {value})"
        )


def _headline(card: cards.Card) -> str:
    """The one metric that best summarises a model, for the listing."""
    m = card.test_metrics
    if "bleu" in m:
        return f"BLEU {m['bleu']:.1f}, chrF {m['chrf']:.1f} (greedy)"
    if "bits_per_character" in m:
        return f"{m['bits_per_character']:.3f} bits/char, perplexity {m['perplexity']:.2f}"
    if "macro_f1" in m:
        return f"accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}"
    if "accuracy" in m:
        return f"accuracy {m['accuracy']:.3f}"
    if "sequence_error_rate" in m:
        return f"sequence error {m['sequence_error_rate']:.3f}, digit error {m['digit_error_rate']:.3f}"
    if "detection_rate" in m:
        return f"detection {m['detection_rate']:.3f}, {m['false_alarms_per_hour']:.1f} false alarms/h"
    if "anomaly" in m and "ucr_hit" in m["anomaly"]:
        return f"MASE {m['mase']:.2f}, UCR hit {'yes' if m['anomaly']['ucr_hit'] else 'no'}"
    if "nll_per_frame" in m:
        return f"NLL/frame {m['nll_per_frame']:.2f}"
    if "c_td_mean" in m:
        return f"C^td {m['c_td_mean']:.3f}, AUC {m['auc_5y_known_visits']:.3f}"
    return f"MASE {m['mase']:.3f}" if "mase" in m else "-"


def cmd_list(args: argparse.Namespace) -> int:
    names = zoo.list_models()
    if not names:
        print("no shipped models in saved_models/ (train one: rnnzoo train NAME)")
        return 0
    rows = [("name", "task", "cell", "params", "can", "test metric")]
    for name in names:
        c = zoo.card(name)
        a = c.architecture
        cell = ("bi" if a.bidirectional else "") + a.cell + f" {a.layers}x{a.units}"
        can = ",".join(sorted(zoo.REGISTRY[name].capabilities))
        rows.append((name, c.task, cell, f"{c.parameters:,}", can, _headline(c)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    print(json.dumps(zoo.card(args.name).to_json(), indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    overrides = {
        k: v
        for k, v in vars(args).items()
        if k
        in ("cell", "units", "layers", "bidirectional", "epochs", "seed", "batch_size", "dropout", "members")
        and v is not None
    }
    devices = None
    hosts = (args.coordinator, args.num_processes, args.process_id)
    if args.devices is not None or any(h is not None for h in hosts):
        from zoo import distributed

        if args.devices is None:
            raise UserError("--coordinator / --num-processes / --process-id need --devices all")
        devices = distributed.parse_devices(args.devices)
        distributed.join_hosts(*hosts)  # before anything touches a device
    card = zoo.train(args.name, out=args.out, devices=devices, **overrides)
    out = Path(args.out) if args.out else cards.SAVED_MODELS
    if devices is not None:
        out = distributed.process_folder(out)  # process K > 0 of several: OUT/process-K
    print(f"wrote {out / card.name}: {_headline(card)} (wall time {card.recipe.wall_time_s} s)")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from zoo.fit import fit

    def columns(value: str | None) -> list[str] | None:
        return [c.strip() for c in value.split(",") if c.strip()] if value else None

    target = columns(args.target) or []
    devices = None
    if args.devices is not None:
        from zoo import distributed

        devices = distributed.parse_devices(args.devices)  # ValueError: one line
    result = fit(
        args.data,
        target[0] if len(target) == 1 else target,
        id=args.id,
        time_col=args.time,
        features=columns(args.features),
        task=args.task,
        horizon=args.horizon,
        window=args.window,
        season=args.season,
        fill=args.fill,
        balance=args.balance,
        cell=args.cell,
        units=args.units,
        layers=args.layers,
        dropout=args.dropout,
        bidirectional=args.bidirectional,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        patience=args.patience,
        seed=args.seed,
        search=args.search,
        from_model=args.from_model,
        out=args.out,
        force=args.force,
        chunked=True if args.chunked else None,
        steps_per_epoch=args.steps_per_epoch,
        devices=devices,
    )
    card = result.card
    mode = (
        "step by step"
        if card.streaming.mode == "step"
        else f"in window mode ({card.streaming.window} readings)"
    )
    print(
        f"wrote {result.folder}: {_headline(card)}; streams {mode}"
        + (
            f", parity with Keras {card.streaming.max_abs_diff_vs_keras:.1e}"
            if card.streaming.max_abs_diff_vs_keras is not None
            else ""
        )
        + f" (wall time {card.recipe.wall_time_s} s)\n"
        f"next: rnnzoo evaluate {result.folder}   |   rnnzoo serve --model {result.folder} …"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    fresh = zoo.evaluate(args.name)
    recorded = zoo.card(args.name).test_metrics
    keys = [
        k
        for k in (
            "accuracy",
            "balanced_accuracy",
            "per_step_accuracy_mean",
            "mae",
            "rmse",
            "mase",
            "nll_per_frame",
            "bits_per_character",
            "perplexity",
            "macro_f1",
            "bleu",
            "chrf",
            "exact_match",
        )
        if k in fresh
    ]
    print(f"{args.name}: test split re-measured vs card")
    for k in keys:
        print(f"  {k:24s} {fresh[k]:.4f}   (card {recorded.get(k, float('nan')):.4f})")
    if "anomaly" in fresh:
        a = fresh["anomaly"]
        print(
            f"  anomaly: {a['flagged_test_points']} test points flagged"
            + (
                f", UCR hit {a['ucr_hit']}, precision {a['precision']:.3f}, recall {a['recall']:.3f}"
                if "ucr_hit" in a
                else ""
            )
        )
    return 0


def _read_input(path: str) -> np.ndarray:  # noqa: F821 (numpy imported lazily)
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise UserError(f"input file {path} does not exist")
    try:
        if p.suffix == ".npy":
            x = np.load(p, allow_pickle=False).astype("float32")
        else:
            x = np.loadtxt(p, delimiter=",", dtype="float32", ndmin=2)
    except EOFError:
        raise UserError(f"{path} is empty or truncated") from None
    except (ValueError, TypeError, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(f"cannot read {path} as numbers ({first})") from None
    if x.size == 0:
        raise UserError(f"{path} holds no values (shape {list(x.shape)})")
    return x


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    require(args.name, Capability.PREDICT)
    card = zoo.card(args.name)
    f, t = card.preprocessing.n_features, card.preprocessing.sequence_length
    window = card.streaming.mode == "window"
    x = _read_input(args.input)
    if x.ndim == 2:
        x = x[None]
    expected = f"[steps, {f}] or [sequences, steps, {f}]" + (f" with steps = {t}" if window else "")
    if x.ndim != 3 or x.shape[-1] != f or (window and t and x.shape[1] != t):
        raise UserError(f"input has shape {list(x.shape)}; {args.name} expects {expected}")
    if not np.isfinite(x).all():
        raise UserError("input contains NaN or infinite values")
    out = np.asarray(zoo.load(args.name).predict(x, verbose=0))
    names = card.class_names
    risk = card.preprocessing.details.get("risk")  # a risk model: one output's probability after every step
    for i, seq in enumerate(out):
        if risk:
            p = seq[:, risk["output"]]
            trail = " ".join(f"{v:.3f}" for v in p)
            step = risk["step"]
            print(f"sequence {i}: {risk['name']} {p[-1]:.3f} after {step} {len(p)} (by {step}: {trail})")
            continue
        last = seq[-1] if seq.ndim == 2 else seq
        if names:
            print(f"sequence {i}: {names[int(last.argmax())]} (p={float(last.max()):.3f})")
        else:
            print(f"sequence {i}: next value {float(last[0]):.5g}")
    return 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    require(args.name, Capability.TRANSCRIBE)
    if not 0 <= args.beam_width <= MAX_BEAM:
        raise UserError(f"--beam-width must be between 0 (greedy) and {MAX_BEAM} (got {args.beam_width})")
    _long_enough(args.wav, zoo.card(args.name))
    digits = zoo.transcribe(args.name, args.wav, beam_width=args.beam_width)
    if not digits:
        print(f"rnnzoo: no digits recognised in {args.wav}", file=sys.stderr)
        return 1
    print(digits)
    return 0


def _long_enough(path: str, card: cards.Card) -> None:
    """Refuse audio too short to hold a word (a few samples decode to nothing, silently)."""
    from zoo.audio import read_wav
    from zoo.speech import sample_rate

    rate = sample_rate(card)
    wave = read_wav(path, rate)
    if len(wave) < MIN_AUDIO_SECONDS * rate:
        raise UserError(f"{path} holds {len(wave) / rate * 1000:.1f} ms of audio; a spoken word needs more")


def cmd_classify_audio(args: argparse.Namespace) -> int:
    require(args.name, Capability.CLASSIFY_AUDIO)
    card = zoo.card(args.name)
    n_words = len(card.class_names or [])
    if not 1 <= args.top <= n_words:
        raise UserError(f"--top must be between 1 and {n_words} (got {args.top})")
    for wav in args.wavs:
        _long_enough(wav, card)
    results = zoo.classify_audio(args.name, args.wavs)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for r in results:
        others = list(r["probabilities"].items())[1 : args.top]
        rest = "".join(f"  {word} {p:.3f}" for word, p in others)
        print(f"{r['file']}: {r['label']} (p={r['probability']:.3f}){'  next:' + rest if rest else ''}")
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    require(args.name, Capability.LISTEN)
    _long_enough(args.input, zoo.card(args.name))
    detections = zoo.listen(args.name, args.input)
    keyword = zoo.card(args.name).preprocessing.details.get("keyword", "keyword")
    for d in detections:
        print(f"{d['time_s']:8.2f} s  {keyword}  (p={d['probability']:.3f})")
    print(f"{len(detections)} detection(s) of {keyword!r} in {args.input}")
    return 0


def _writable(path: str, option: str) -> Path:
    """``path`` if a file can be written there, else a UserError naming the option (checked before composing)."""
    import os

    p = Path(path)
    if p.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{option} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise UserError(f"{option} {path}: cannot write there (permission denied)")
    return p


def cmd_compose(args: argparse.Namespace) -> int:
    from zoo.music import count_notes, plot_roll, write_midi

    require(args.name, Capability.COMPOSE)
    if args.bars < 1:
        raise UserError(f"--bars must be at least 1 (got {args.bars})")
    if args.prime_bars < 1:
        raise UserError(f"--prime-bars must be at least 1 (got {args.prime_bars})")
    _finite_temperature(args.temperature)
    if args.max_notes is not None and args.max_notes < 1:
        raise UserError(f"--max-notes must be at least 1 (got {args.max_notes})")
    out = _writable(args.out, "--out")
    png = _writable(args.png, "--png") if args.png else None
    pre = zoo.card(args.name).preprocessing.details
    steps = args.bars * pre["steps_per_bar"]
    roll = zoo.compose(
        args.name,
        steps=steps,
        temperature=args.temperature,
        seed=args.seed,
        prime=args.prime,
        prime_bars=args.prime_bars,
        max_notes=args.max_notes,
    )
    primed = len(roll) - steps
    try:
        write_midi(roll, out, grid=pre["grid_quarter_notes"])
        if png is not None:
            title = f"{args.name}, seed {args.seed}, temperature {args.temperature}" + (
                f", primed with {args.prime}" if args.prime else ""
            )
            plot_roll(roll, png, title, prime_frames=primed, steps_per_bar=pre["steps_per_bar"])
    except OSError as e:
        raise UserError(f"cannot write output: {e.strerror or e} ({e.filename or out})") from None
    prime_text = f" after a {args.prime_bars}-bar prime from {args.prime}" if args.prime else " from silence"
    print(
        f"wrote {out}: {args.bars} bars ({steps} frames of {pre['grid_quarter_notes']} quarter notes){prime_text}, "
        f"{count_notes(roll)} notes, at most {int(roll[primed:].sum(1).max())} at once, seed {args.seed}"
    )
    if png is not None:
        print(f"wrote {png}: piano roll")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    require(args.name, Capability.GENERATE)
    _finite_temperature(args.temperature, allow_zero=True)
    text = zoo.generate(
        args.name, args.prompt, args.length, temperature=args.temperature, top_k=args.top_k, seed=args.seed
    )
    print(args.prompt + text)
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    require(args.name, Capability.CLASSIFY)
    texts = list(args.texts)
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise UserError(f"input file {args.input} does not exist")
        try:
            texts += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise UserError(f"{args.input} is not UTF-8 text") from None
    if not texts:
        raise UserError('no text to classify: pass texts ("…") or --input FILE (one text a line)')
    for r in zoo.classify_text(args.name, texts):
        p = r["probabilities"][r["label"]]
        print(f"{r['label']:<9} (p={p:.3f})  {r['text']}")
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    require(args.name, Capability.TRANSLATE)
    if not args.sentences:
        raise UserError('no sentence to translate: pass one or more sentences ("…")')
    if not 1 <= args.beam <= MAX_BEAM:
        raise UserError(f"--beam must be between 1 and {MAX_BEAM} (got {args.beam})")
    for out in zoo.translate(args.name, args.sentences, beam=args.beam):
        print(out)
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    import numpy as np

    from zoo.diagnostics import SUPPORTED_HEADS, gradient_flow
    from zoo.registry import REGISTRY, get_spec

    def diagnosable(spec: object) -> bool:
        a = spec.arch  # type: ignore[attr-defined]
        return not a.bidirectional and not a.embedding and spec.head in SUPPORTED_HEADS  # type: ignore[attr-defined]

    if not diagnosable(get_spec(args.name)):
        which = ", ".join(n for n in zoo.list_models() if diagnosable(REGISTRY[n]))
        raise UserError(
            f"{args.name} cannot be diagnosed: gradient flow through time is measured on causal recurrent "
            f"models without a token embedding ({which})"
        )
    if args.examples < 1 or args.steps < 2:
        raise UserError(
            f"--examples must be at least 1 and --steps at least 2 (got {args.examples}, {args.steps})"
        )
    from zoo.backend import keras

    model = zoo.load(args.name)
    label = "trained"
    if args.fresh:  # the same architecture, freshly initialised (seeded): what training starts from
        keras.utils.set_random_seed(args.seed)
        model = keras.models.clone_model(model)
        label = f"fresh (seed {args.seed})"
    x, y = zoo.test_data(args.name)
    x, y = np.asarray(x)[: args.examples, : args.steps], np.asarray(y)[: args.examples]
    if y.ndim >= 2:
        y = y[:, : args.steps]
    flow = gradient_flow(model, x, y, get_spec(args.name).head, last_step=not args.all_steps)
    out = Path(args.out)
    title = f"{args.name} ({label}): gradient flow through time"
    for path in flow.write(out, title=title):
        print(f"wrote {path}")
    for name, cell, decades in zip(flow.layers, flow.cells, flow.decay_decades(), strict=True):
        print(
            f"{name} ({cell}): ‖∂L/∂h_t‖ from step {x.shape[1]} back to step 1 changes by {decades:+.1f} "
            f"orders of magnitude"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from zoo.export import DEFAULT_COMPUTE, digest, state_slots, step_model_of

    card = zoo.card(args.name)  # an unknown name fails here, with suggestions
    if args.out and Path(args.out).is_file():
        raise UserError(f"--out {args.out} is a file; give a folder")
    if args.quantize and args.format != "litert":
        raise UserError(f"--quantize applies to --format litert only (got {args.format})")
    if args.sequence and (args.quantize or args.compute_dtype == "float64"):
        raise UserError("a whole-sequence graph is float32 and unquantised: drop --quantize/--compute-dtype")
    compute = "float32" if args.sequence else args.compute_dtype or DEFAULT_COMPUTE[args.format]
    try:
        path = zoo.export(args.name, args.format, args.out, compute, args.quantize, args.sequence)
    except ImportError as e:
        raise UserError(f"exporting needs {e.name}: pip install 'rnn-zoo[export]'") from None
    if args.sequence and card.kind == "translation":
        return _report_encoder_decoder(card, args.format, Path(path))
    key = args.format + (f"-{args.quantize}" if args.quantize else "-sequence" if args.sequence else "")
    recorded = (card.exports or {}).get(key)
    if args.sequence:
        print(f"wrote {path}: whole sequences x[B,T,...] -> the model's output; float32")
    else:
        states = ", ".join(f"{s.name}[B,{s.width}]" for s in state_slots(step_model_of(args.name)))
        inside = f"{args.quantize} quantised" if args.quantize else f"{compute} inside"
        print(f"wrote {path}: one step, x[B,{card.preprocessing.n_features}], {states} -> y, <state>_out; "
              f"float32 in and out, {inside}")  # fmt: skip
    if recorded is not None and recorded.quantization:
        compute = recorded.compute_dtype
    made = digest(path)
    if recorded is None or recorded.compute_dtype != compute:
        verdict = "the card records no such export"
    elif not recorded.reproducible:
        verdict = f"a {args.format} differs byte for byte from run to run; the card's parity is the graph's"
    elif recorded.sha256 == made:
        verdict = f"as the card records; parity with Keras {recorded.max_abs_diff_vs_keras:.1e}"
    else:
        verdict = f"differs from the card's {recorded.sha256[:12]}… (made with {recorded.format_version})"
    print(f"sha256 {made} ({verdict})")
    return 0


def _report_encoder_decoder(card: cards.Card, fmt: str, folder: Path) -> int:
    from zoo.export import digest
    from zoo.export.seq2seq import FILES

    for graph, io in (
        ("encoder", "source[B,S] -> encoder_outputs, decoder_state"),
        (
            "decoder_step",
            "prev_token[B], decoder_state, encoder_outputs, source -> log_probs, decoder_state_out",
        ),
    ):
        path = folder / FILES[fmt][graph]
        recorded = (card.exports or {}).get(f"{fmt}-{graph.replace('_', '-')}")
        made = digest(path)
        verdict = (
            "the card records no such export"
            if recorded is None
            else f"a {fmt} differs byte for byte from run to run; greedy parity "
            f"{recorded.greedy_match_rate:.0%}, max |diff| {recorded.max_abs_diff_vs_keras:.1e}"
        )
        print(f"wrote {path}: {io}; float32\nsha256 {made} ({verdict})")
    return 0


FIT_EPILOG = """examples:
  rnnzoo fit readings.csv --target activity --id device --time t --out runs/activity
  rnnzoo fit plant.parquet --target temp --time ts --task forecast --horizon 4 --out runs/temp
  rnnzoo fit small.csv --target label --id unit --from activity-gru-causal --out runs/tuned

The table has one row per reading. Without --task the target decides: labels constant within every sequence
-> classify, labels that change -> tag, numbers constant per sequence -> regress, otherwise forecast (one line
says which and why). Splits are by sequence (by time for one long recording); the card holds the test figures
beside the baselines measured on the same split, and the command says plainly when a baseline wins. The folder
then works everywhere a model name does: rnnzoo evaluate / predict / export / serve --model / worker --model."""


def _fit_parser(sub: argparse._SubParsersAction) -> None:
    from zoo.fit import KINDS

    p = sub.add_parser(
        "fit",
        help="fit a recurrent model on your own table of readings (CSV / Parquet) and write a model folder",
        description="Fit a causal recurrent model on your own readings with the zoo's training loop (clipping, "
        "early stopping with the best weights, seeds, Ctrl-C keeps the best so far), baselines on the same "
        "split and step parity, written as a model folder (model.keras + card.json + plots).",
        epilog=FIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", help="CSV or Parquet file, one row per reading")
    p.add_argument("--target", required=True, help="column to predict (forecast: several, comma-separated)")
    p.add_argument(
        "--id", help="column naming each sequence (device, recording, patient); default: one recording"
    )
    p.add_argument("--time", help="column ordering rows within a sequence; gives the sampling rate")
    p.add_argument("--features", help="comma-separated input columns (default: every other numeric column)")
    p.add_argument("--task", choices=KINDS, help="default: chosen from the target column (and said why)")
    p.add_argument("--horizon", type=int, default=1, help="forecast: readings ahead (default 1)")
    p.add_argument(
        "--window", type=int, help="training window of tag / forecast / per-reading regress (default 256)"
    )
    p.add_argument("--season", type=int, help="forecast: the seasonal-naive baseline's period in readings")
    p.add_argument("--fill", choices=["ffill", "zero"], help="fill NaN / inf in features instead of refusing")
    p.add_argument("--balance", choices=["auto", "on", "off"], default="auto",
                   help="balanced class weights (auto: when class counts differ by more than 1.5x)")  # fmt: skip
    p.add_argument("--cell", choices=["simple", "lstm", "gru"], default="gru")
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--bidirectional", action="store_true", help="classify only; served in window mode")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--patience", type=int, default=12, help="early-stopping patience in epochs (default 12)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--search", action="store_true",
                   help="train every cell x units 32/64 x layers 1/2 alike; keep the best on validation")  # fmt: skip
    p.add_argument("--from", dest="from_model", metavar="MODEL",
                   help="fine-tune a zoo model (name or fitted folder): its recurrent layers, a new head")  # fmt: skip
    p.add_argument("--out", required=True, help="model folder to write (refused if it exists)")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    p.add_argument("--chunked", action="store_true",
                   help="read the file block by block, never whole (automatic above 256 MB)")  # fmt: skip
    p.add_argument("--steps-per-epoch", type=int,
                   help="with --chunked: batches per epoch (default: one pass over the training rows)")  # fmt: skip
    p.add_argument("--devices", metavar="N|all",
                   help="data-parallel training over N (or all) JAX devices, the global batch split across them "
                   "(KERAS_BACKEND=jax; docs/training-devices.md)")  # fmt: skip
    p.set_defaults(func=cmd_fit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnzoo",
        description="Pretrained recurrent networks (SimpleRNN, LSTM, GRU) for sensors, health, and more.",
        epilog="Models live in saved_models/<name>/ (model.keras + card.json). Run `rnnzoo list` to start.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="table of the shipped models with their test metric")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="print a model's card (data, split, metrics, baselines, recipe)")
    p.add_argument("name")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "diagnose",
        help="gradient flow through time: ‖∂L/∂h_t‖ per step on test data (JSON, CSV and a PNG)",
        description="Backpropagate the loss of the last step (or, with --all-steps, of every step) of a batch of "
        "test sequences to the hidden state of every recurrent layer at every step, with the backend's "
        "autodiff, and write the norm per step: a vanilla RNN's gradient vanishes towards early steps, gated "
        "cells keep it.",
    )
    p.add_argument("name")
    p.add_argument(
        "--fresh", action="store_true", help="a freshly initialised copy instead of the trained model"
    )
    p.add_argument("--seed", type=int, default=0, help="initialisation seed with --fresh (default 0)")
    p.add_argument("--examples", type=int, default=16, help="test sequences in the batch (default 16)")
    p.add_argument("--steps", type=int, default=200, help="first steps of each sequence used (default 200)")
    p.add_argument("--all-steps", action="store_true", help="loss over every step, not only the last")
    p.add_argument("--out", default="diagnostics", help="output folder (default ./diagnostics)")
    p.set_defaults(func=cmd_diagnose)

    p = sub.add_parser(
        "export",
        help="write a causal model as a single-step graph with explicit state (ONNX, LiteRT, SavedModel)",
        description="A graph (x[B,F], layer0_h, ...) -> (y[B,K], layer0_h_out, ...) from the model's own weights, "
        "normalisation inside, dynamic batch; the card's exports block records its sha256, parity and latency.",
    )
    p.add_argument("name")
    p.add_argument("--format", required=True, choices=["onnx", "litert", "savedmodel"])
    p.add_argument("--out", help="output folder (default ./exports/NAME)")
    p.add_argument(
        "--compute-dtype",
        choices=["float32", "float64"],
        help="arithmetic inside the graph (default float64 for onnx and savedmodel; litert is float32 only)",
    )
    p.add_argument(
        "--quantize",
        choices=["dynamic", "int8"],
        help="litert: dynamic-range (int8 weights) or full-integer int8 (calibrated on training-split steps)",
    )
    p.add_argument(
        "--sequence",
        action="store_true",
        help="the whole-sequence graph of the Keras model (bidirectional and other non-causal models); "
        "translation: encoder.* and decoder_step.*",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("train", help="retrain a model from its registry recipe (options override it)")
    p.add_argument("name")
    p.add_argument("--cell", choices=["simple", "lstm", "gru"])
    p.add_argument("--units", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--dropout", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--members",
        type=int,
        help="train this many models from seeds SEED, SEED+1, ... and ship them as one ensemble (1: one model)",
    )
    p.add_argument("--out", help="output folder (default: saved_models/, replacing the shipped model)")
    p.add_argument(
        "--devices",
        metavar="N|all",
        help="data-parallel training over N (or all) JAX devices, the global batch split across them "
        "(KERAS_BACKEND=jax; docs/training-devices.md)",
    )
    p.add_argument("--coordinator", metavar="HOST:PORT", help="several processes: process 0's address")
    p.add_argument("--num-processes", type=int, help="several processes: how many take part")
    p.add_argument("--process-id", type=int, help="several processes: this one's id, 0 .. N-1")
    p.set_defaults(func=cmd_train)

    _fit_parser(sub)

    p = sub.add_parser(
        "evaluate", help="re-measure a shipped model on its test split and compare with its card"
    )
    p.add_argument("name")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="run a model on sequences from a CSV (steps x features) or .npy file")
    p.add_argument("name")
    p.add_argument("--input", required=True, help="CSV: one row per step; .npy: [steps, F] or [N, steps, F]")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("transcribe", help="print the digits spoken in a WAV file (a CTC model)")
    p.add_argument("name")
    p.add_argument("wav", help="WAV file, any sample rate (mono or stereo)")
    p.add_argument("--beam-width", type=int, default=16, help="CTC beam width (0: greedy)")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser(
        "classify-audio",
        help="which word each WAV file says (a spoken-word classifier, e.g. spoken-words-bigru)",
        description="Label each WAV file with the word it says and its probability, then the runners-up. "
        "One word per file, any sample rate (resampled to the model's), mono or stereo; up to the card's "
        "clip length (1.2 s for spoken-words-bigru) is read after a short lead of silence.",
    )
    p.add_argument("name")
    p.add_argument("wavs", nargs="+", metavar="FILE.wav", help="one or more WAV files")
    p.add_argument("--top", type=int, default=3, help="words to print per file, best first (default 3)")
    p.add_argument("--json", action="store_true", help="print every word's probability as JSON")
    p.set_defaults(func=cmd_classify_audio)

    p = sub.add_parser("listen", help="run a keyword spotter over a WAV file as a stream; print detections")
    p.add_argument("name")
    p.add_argument("--input", required=True, help="WAV file, any sample rate")
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser("compose", help="write music with a chorale model: a MIDI file (and a PNG piano roll)")
    p.add_argument("name", help="a generation model, e.g. chorales-gru")
    p.add_argument("--bars", type=int, default=8, help="4/4 bars to generate (default 8)")
    p.add_argument(
        "--temperature", type=float, default=1.0, help="> 0; lower is more conservative (default 1)"
    )
    p.add_argument("--seed", type=int, default=0, help="the same seed writes the same file (default 0)")
    p.add_argument("--out", required=True, help="MIDI file to write")
    p.add_argument("--png", help="also save a piano-roll picture here")
    p.add_argument("--prime", metavar="BWV", help="start from the opening of this test chorale, e.g. bwv437")
    p.add_argument("--prime-bars", type=int, default=2, help="bars of the prime to use (default 2)")
    p.add_argument("--max-notes", type=int, help="at most this many notes at once (default: no cap)")
    p.set_defaults(func=cmd_compose)

    p = sub.add_parser("generate", help="write text with a character language model (seeded sampling)")
    p.add_argument("name")
    p.add_argument("--prompt", required=True, help="text to continue (characters the model knows)")
    p.add_argument("--length", type=int, default=300, help="characters to generate (default 300)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy, <1 safer, >1 wilder")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest characters (0 = all)")
    p.add_argument("--seed", type=int, help="random seed: the same seed gives the same text")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("classify", help="label texts with a text classifier (e.g. sentiment)")
    p.add_argument("name")
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--input", help="UTF-8 file, one text a line")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser(
        "translate", help="translate English sentences (e.g. translate-en-fr-gru); one per line out"
    )
    p.add_argument("name")
    p.add_argument("sentences", nargs="*", help="English sentences (software-message style)")
    p.add_argument("--beam", type=int, default=1, help="beam width (default 1: greedy)")
    p.set_defaults(func=cmd_translate)

    from streaming.cli import register  # serve, simulate, demo, worker

    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, zoo.UnknownModelError, IntegrityError, FileNotFoundError, ValueError) as e:
        print(f"rnnzoo: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:  # a serving install (rnn-zoo[serve]) has no Keras or data packages
        print(
            f"rnnzoo: error: this needs {e.name}, which this install lacks: pip install 'rnn-zoo[full]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
