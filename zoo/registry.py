"""The one table of the zoo's models: name -> task, head, architecture and training recipe.

``zoo.list_models()``, ``zoo.load()``, ``zoo.train()``, the CLI and the retraining script all read this table;
nothing else lists models.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum

from zoo.architecture import MODEL_HEADS, Architecture
from zoo.data.split import KINDS

# The registry's tasks by name; `zoo.tasks.TASKS` holds one object for each (tests/test_registry.py checks that the
# two agree and that each task can train its models' heads). Named here because the tasks import Keras and the
# registry must not. A model fitted on a user's table (`zoo.fit`) has the task ``fit-<kind>``.
TASK_NAMES = (
    "activity",
    "pigcvp",
    "ecg-anomaly",
    "abp-anomaly",
    "co2-forecast",
    "pbc-visits",
    "chorales",
    "japanese-vowels",
    "spoken-words",
    "keyword-spotting",
    "connected-digits",
    "kjv-chars",
    "tweet-sentiment",
    "tweet-sentiment-wordpiece",
    "translate-en-fr",
)
FIT_TASKS = tuple(f"fit-{kind}" for kind in KINDS)


@dataclass(frozen=True)
class Recipe:
    """How a model is trained (the card records it next to the backend, device and wall time)."""

    epochs: int = 200
    batch_size: int = 16
    learning_rate: float = 3e-3
    clipnorm: float = 1.0
    patience: int = 30
    seed: int = 0
    optimizer: str = "adam"
    # What early stopping watches on the validation split: "val_loss", or "val_accuracy" where a tiny
    # validation set makes its loss rise while accuracy still improves.
    monitor: str = "val_loss"
    # "balanced" weighs each class's loss by n / (classes * count) so a minority class counts as much as a
    # majority one (helps macro-F1 and stops a skewed prior from swallowing the rare class); None: unweighted.
    class_weight: str | None = None
    # Where data is very scarce (e.g. 2 series per class), holding out a validation split costs the final model
    # real training data: with ``refit`` the validation run only chooses the epoch count, then a fresh model
    # (same seed) is trained on training + validation data for that many epochs and shipped.
    refit: bool = False
    # "cosine": the learning rate falls from ``learning_rate`` to 0 over ``epochs`` by half a cosine, set once
    # per epoch (late epochs take small steps, so the validation loss settles instead of bouncing); None: fixed.
    lr_decay: str | None = None
    # An ensemble (`zoo.ensemble`): this many models trained alike from seeds ``seed``, ``seed + 1``, ..., each
    # exactly what ``rnnzoo train NAME --seed N --members 1`` trains alone, stacked into one model. For where
    # one run is a draw whose luck validation cannot tell from a better recipe (the digit model).
    members: int = 1

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ValueError(f"members must be at least 1, not {self.members}")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', not {self.class_weight!r}")
        if self.lr_decay not in (None, "cosine"):
            raise ValueError(f"lr_decay must be None or 'cosine', not {self.lr_decay!r}")

    def learning_rate_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (0-based) under ``lr_decay``."""
        if self.lr_decay is None:
            return self.learning_rate
        return self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))

    def to_dict(self) -> dict:
        return asdict(self)


class Capability(StrEnum):
    """What a model can be asked to do; each is the `rnnzoo` command (and `zoo.*` function) that does it.

    Every model can be listed, inspected, evaluated and retrained; these are the uses that depend on what the
    model reads and writes, declared per model so that a command refuses a model in one line instead of
    failing half-way (`rnnzoo compose kjv-char-lstm` says it cannot compose, before loading anything).
    """

    PREDICT = "predict"  # numeric readings [steps, F] in, a label or a value out (`rnnzoo predict`)
    STREAM = "stream"  # one prediction per MQTT reading (`rnnzoo serve / simulate / demo`)
    COMPOSE = "compose"  # write music (`rnnzoo compose`, `zoo.compose`)
    GENERATE = "generate"  # continue a text prompt (`rnnzoo generate`, `zoo.generate`)
    CLASSIFY = "classify"  # label texts (`rnnzoo classify`, `zoo.classify_text`)
    TRANSLATE = "translate"  # English -> French (`rnnzoo translate`, `zoo.translate`)
    TRANSCRIBE = "transcribe"  # digits in a WAV file (`rnnzoo transcribe`, `zoo.transcribe`)
    LISTEN = "listen"  # spot a keyword in a WAV stream (`rnnzoo listen`, `zoo.listen`)
    CLASSIFY_AUDIO = (
        "classify-audio"  # which word a WAV clip says (`rnnzoo classify-audio`, `zoo.classify_audio`)
    )


SENSOR = frozenset({Capability.PREDICT, Capability.STREAM})


class CapabilityError(ValueError):
    """A model asked to do what it cannot; the message names what it can do and which models can."""


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the zoo."""

    name: str
    task: str
    head: str
    arch: Architecture
    recipe: Recipe = field(default_factory=Recipe)
    summary: str = ""
    capabilities: frozenset[Capability] = SENSOR
    # Test metrics compared across the models of the same task that differ only in their cell (GRU / LSTM /
    # SimpleRNN, same recipe and split): each card of such a group carries the group's table.
    cell_comparison: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.task not in TASK_NAMES and self.task not in FIT_TASKS:
            raise ValueError(
                f"model {self.name!r}: unknown task {self.task!r}; the tasks are {', '.join(TASK_NAMES)}"
            )
        if self.head not in MODEL_HEADS:
            raise ValueError(
                f"model {self.name!r}: unknown head {self.head!r}; the heads are {', '.join(sorted(MODEL_HEADS))}"
            )

    def with_overrides(self, **overrides: object) -> ModelSpec:
        """A copy with architecture / recipe fields replaced (``cell=``, ``units=``, ``epochs=``, …)."""
        arch_keys = set(Architecture.__dataclass_fields__)
        recipe_keys = set(Recipe.__dataclass_fields__)
        unknown = set(overrides) - arch_keys - recipe_keys
        if unknown:
            raise ValueError(
                f"unknown override(s) {sorted(unknown)}: choose from {sorted(arch_keys | recipe_keys)}"
            )
        arch = replace(self.arch, **{k: v for k, v in overrides.items() if k in arch_keys})
        recipe = replace(self.recipe, **{k: v for k, v in overrides.items() if k in recipe_keys})
        head = self.head
        if arch.bidirectional and head.startswith("step_classification"):
            head = "sequence_classification"  # a bidirectional model sees the future: no per-step answer
        if recipe.members > 1 and head != "ctc":
            # Only CTC decoding combines an ensemble's members (a vote on transcripts, zoo.speech); elsewhere
            # its stacked outputs would reach commands that expect one model's.
            raise ValueError(f"members={recipe.members}: only a CTC model (head 'ctc') can be an ensemble")
        return replace(self, arch=arch, recipe=recipe, head=head)


def _activity(cell: str) -> ModelSpec:
    return ModelSpec(
        name=f"activity-{cell}-causal",
        task="activity",
        head="step_classification",
        arch=Architecture(cell=cell, units=64, layers=2, dropout=0.1),
        recipe=Recipe(epochs=300, batch_size=8, learning_rate=3e-3, patience=60),
        summary=f"IoT activity from smartwatch IMU, causal {cell.upper()}: a prediction after every reading",
        cell_comparison=("accuracy", "balanced_accuracy", "per_step_accuracy_mean"),
    )


# Sensors and IoT: activity from a smartwatch's IMU (three causal cells, a bidirectional GRU); a weekly CO2
# forecast.
_SPECS = [
    _activity("gru"),
    _activity("lstm"),
    _activity("simple"),
    ModelSpec(
        name="activity-bigru",
        task="activity",
        head="sequence_classification",
        arch=Architecture(cell="gru", units=32, layers=1, bidirectional=True, dropout=0.1),
        recipe=Recipe(epochs=300, batch_size=8, learning_rate=3e-3, patience=60),
        summary="IoT activity from smartwatch IMU, bidirectional GRU over the whole 10 s window",
    ),
    ModelSpec(
        name="co2-forecast-gru",
        task="co2-forecast",
        head="step_regression",
        arch=Architecture(cell="gru", units=32, layers=1),
        recipe=Recipe(epochs=100, batch_size=16, learning_rate=3e-3, patience=15),
        summary="IoT sensor forecasting: weekly Mauna Loa CO2, next week, with residual anomaly flags",
    ),
]

# Healthcare: waveforms (central venous pressure, ECG, arterial blood pressure) and a patient's visits over
# time (a causal GRU over the visits, 5-year death risk after each one).
_SPECS += [
    ModelSpec(
        name="pigcvp-bigru",
        task="pigcvp",
        head="sequence_classification",
        arch=Architecture(cell="gru", units=64, layers=1, bidirectional=True, dropout=0.2),
        # Two training series per animal: the validation run only picks the epoch count, then the shipped model
        # is refitted on every training series (validation ones included, augmented alike).
        recipe=Recipe(epochs=300, batch_size=16, learning_rate=1e-3, patience=80, refit=True),
        summary="Healthcare: identify the animal from a central venous pressure waveform (52 classes), "
        "BiGRU over a log spectrogram",
    ),
    ModelSpec(
        name="ecg-anomaly-gru",
        task="ecg-anomaly",
        head="step_regression",
        arch=Architecture(cell="gru", units=32, layers=1),
        recipe=Recipe(epochs=200, batch_size=16, learning_rate=3e-3, patience=20),
        summary="Healthcare: ECG next-sample forecaster; anomalies where the forecast fails",
    ),
    ModelSpec(
        name="abp-anomaly-gru",
        task="abp-anomaly",
        head="step_regression",
        arch=Architecture(cell="gru", units=32, layers=1),
        recipe=Recipe(epochs=200, batch_size=16, learning_rate=3e-3, patience=20),
        summary="Healthcare: arterial blood pressure forecaster; anomalies where the forecast fails",
    ),
    ModelSpec(
        name="pbc-visits-gru",
        task="pbc-visits",
        head="step_classification",
        # Chosen on the validation patients by mean C^td over the landmarks: 16 and 32 units, dropout 0.2-0.5 and
        # learning rate 1e-3 scored 0.793-0.801 against 0.801 for this size (unweighted labels), 0.804 with the
        # task's IPCW label weights (16 units with them: 0.796). Small: it overfits within ~40 epochs.
        arch=Architecture(cell="gru", units=8, layers=1, dropout=0.2),
        recipe=Recipe(epochs=300, batch_size=16, learning_rate=3e-3, patience=40),
        summary="Healthcare: risk of death within 5 years after every visit of a primary biliary cirrhosis "
        "patient (Mayo Clinic PBC follow-up), causal GRU over the visits",
    ),
]


def _chorales(cell: str) -> ModelSpec:
    return ModelSpec(
        name=f"chorales-{cell}",
        task="chorales",
        head="step_multilabel",
        arch=Architecture(cell=cell, units=64, layers=2, dropout=0.2),
        # Run to convergence: at 60 epochs all three cells were still improving.
        recipe=Recipe(epochs=250, batch_size=32, learning_rate=3e-3, patience=12),
        summary=f"Music: Bach chorale next-frame model (88-key piano roll), {cell.upper()}; writes MIDI",
        capabilities=frozenset({Capability.COMPOSE}),
        cell_comparison=("nll_per_frame",),
    )


# Music: Bach chorales as an 88-key piano roll, three cells.
_SPECS += [
    _chorales("lstm"),
    _chorales("gru"),
    _chorales("simple"),
]

# Speech: audio models read 20 ms log-mel frames from `zoo.audio.FrontEnd`.
_SPECS += [
    ModelSpec(
        name="japanese-vowels-bigru",
        task="japanese-vowels",
        head="sequence_classification",
        arch=Architecture(cell="gru", units=32, layers=1, bidirectional=True, dropout=0.2),
        recipe=Recipe(epochs=300, batch_size=16, learning_rate=3e-3, patience=40),
        summary="Speech: which of 9 speakers said /ae/, from 12 LPC cepstra per frame (UEA JapaneseVowels)",
    ),
    ModelSpec(
        name="spoken-words-bigru",
        task="spoken-words",
        head="sequence_classification",
        # 96 units, and the training clips doubled by noise/gain/SpecAugment copies
        # (SpokenWordTask.augment_copies), so fewer epochs: both chosen on the validation voices.
        arch=Architecture(cell="gru", units=96, layers=2, bidirectional=True, dropout=0.2),
        # Best validation loss by epoch 12 with a fixed rate, then bouncing: a cosine decay over 24.
        recipe=Recipe(epochs=24, batch_size=32, learning_rate=2e-3, patience=8, lr_decay="cosine"),
        summary="Speech: which of 20 words (digits, commands) a 1.2 s clip says, on voices never heard in training",
        capabilities=SENSOR | {Capability.CLASSIFY_AUDIO},
    ),
    ModelSpec(
        name="keyword-seven-gru",
        task="keyword-spotting",
        head="step_classification",
        arch=Architecture(cell="gru", units=64, layers=2, dropout=0.1),
        # Best validation loss by epoch 13 with a fixed rate, then bouncing: a cosine decay over 24.
        recipe=Recipe(epochs=24, batch_size=32, learning_rate=2e-3, patience=8, lr_decay="cosine"),
        summary='Speech: streaming keyword spotter, causal GRU per 20 ms frame, fires on "seven"',
        capabilities=SENSOR | {Capability.LISTEN},
    ),
    ModelSpec(
        name="digits-ctc-bigru",
        task="connected-digits",
        head="ctc",
        arch=Architecture(cell="gru", units=64, layers=2, bidirectional=True, dropout=0.1),
        # 1.5x the utterances (human-derived voices, augmented channels) and still improving on the
        # validation voices at epoch 20 with a fixed rate whose validation loss bounced: a cosine decay over 24
        # epochs (~25 s each here).
        # One run is a draw — three seeds validated at mean sequence errors 0.141, 0.224 and 0.208 —
        # and the transcript the three agree on at 0.139: three members, voted (zoo.ensemble).
        recipe=Recipe(epochs=24, batch_size=32, learning_rate=3e-3, patience=6, lr_decay="cosine", members=3),
        summary="Speech: transcribe 1-6 connected spoken digits (3 bidirectional GRUs voting, CTC, beam search)",
        capabilities=frozenset({Capability.TRANSCRIBE}),
    ),
]


def _sentiment(cell: str) -> ModelSpec:
    return ModelSpec(
        name=f"sentiment-bi{cell}",
        task="tweet-sentiment",
        head="sequence_classification",
        arch=Architecture(cell=cell, units=64, layers=1, bidirectional=True, dropout=0.5, embedding=64),
        # The 800k-parameter embedding overfits 30k tweets within 2-3 epochs: keep the best validation accuracy.
        recipe=Recipe(epochs=12, batch_size=64, learning_rate=2e-3, patience=2, monitor="val_accuracy"),
        summary=f"NLP: tweet sentiment (negative / neutral / positive), bidirectional {cell.upper()} over words",
        capabilities=frozenset({Capability.CLASSIFY}),
        cell_comparison=("accuracy", "macro_f1"),
    )


# Language: a character language model, tweet sentiment (words embedded by three cells, and pretrained word
# pieces) and English -> French translation of software messages (attention encoder-decoder).
_SPECS += [
    ModelSpec(
        name="kjv-char-lstm",
        task="kjv-chars",
        head="step_classification",
        arch=Architecture(cell="lstm", units=128, layers=2),
        # 6 passes over 3.7 M characters: ~19 minutes on 2 shared CPU cores (JAX backend). Batch 32 gives twice
        # the updates of batch 64 for the same compute; 3 epochs at batch 64 stopped at 1.94 bits/char.
        recipe=Recipe(epochs=6, batch_size=32, learning_rate=3e-3, patience=1),
        summary="NLP: character language model of the King James Bible (2-layer LSTM); generates text",
        capabilities=frozenset({Capability.GENERATE}),
    ),
    # The LSTM reads pretrained word pieces (all-MiniLM-L6-v2's input vectors, 384 wide) instead of words
    # embedded from the 30k tweets alone; its own task, so it is not in the cell comparison of the other two.
    # Chosen on validation accuracy (scripts/sentiment_study.py, benchmarks/results/sentiment_study.json):
    # 128 units 0.7878 vs 64 units 0.7814 (6 epochs, vectors x8); 12 epochs under a cosine decay (int8 table) 0.7897.
    ModelSpec(
        name="sentiment-bilstm",
        task="tweet-sentiment-wordpiece",
        head="sequence_classification",
        arch=Architecture(cell="lstm", units=128, layers=1, bidirectional=True, dropout=0.5, embedding=384),
        recipe=Recipe(
            epochs=12,
            batch_size=64,
            learning_rate=2e-3,
            patience=4,
            monitor="val_accuracy",
            lr_decay="cosine",
        ),
        summary="NLP: tweet sentiment (negative / neutral / positive), bidirectional LSTM over pretrained "
        "MiniLM word-piece vectors",
        capabilities=frozenset({Capability.CLASSIFY}),
    ),
    _sentiment("gru"),
    _sentiment("simple"),
    ModelSpec(
        name="translate-en-fr-gru",
        task="translate-en-fr",
        head="seq2seq",
        arch=Architecture(cell="gru", units=128, layers=1, bidirectional=True, dropout=0.1, embedding=128),
        # Early stopping decides: at 5 epochs validation loss is still falling.
        recipe=Recipe(epochs=25, batch_size=64, learning_rate=2e-3, patience=2),
        summary="NLP: English -> French software messages, BiGRU encoder + GRU decoder with attention; beam search",
        capabilities=frozenset({Capability.TRANSLATE}),
    ),
]

REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


class UnknownModelError(KeyError):
    """Raised for a name the registry does not hold; the message suggests the closest names."""

    def __str__(self) -> str:
        return str(self.args[0])


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``, or an error naming the closest entries."""
    if name in REGISTRY:
        return REGISTRY[name]
    close = difflib.get_close_matches(name, list(REGISTRY), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known models: {', '.join(REGISTRY)}"
    raise UnknownModelError(f"unknown model {name!r}{hint}")


def cell_comparisons() -> dict[tuple[str, ...], tuple[str, ...]]:
    """(model names of one task that compare cells) -> the test metrics their cards' table compares."""
    groups: dict[str, list[ModelSpec]] = {}
    for spec in REGISTRY.values():
        if spec.cell_comparison:
            groups.setdefault(spec.task, []).append(spec)
    return {tuple(s.name for s in specs): specs[0].cell_comparison for specs in groups.values()}


def require(name: str, capability: Capability) -> ModelSpec:
    """The registry entry for ``name`` if the model can do ``capability``; else a CapabilityError that says
    what it can do and which models can do what was asked."""
    spec = get_spec(name)
    if capability in spec.capabilities:
        return spec
    can = ", ".join(sorted(spec.capabilities)) or "only be inspected, evaluated and retrained"
    others = [n for n, s in REGISTRY.items() if capability in s.capabilities]
    hint = f" (try {', '.join(others[:3])})" if others else ""
    raise CapabilityError(f"{name} cannot {capability}: it can {can}{hint}")
