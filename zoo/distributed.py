"""Data-parallel training over several devices, and several hosts, with Keras' own engine.

`data_parallel` turns a ``devices`` request (``None``, an int >= 2 or ``"all"``) into a `Placement`: a
``keras.distribution.DataParallel`` over that many JAX devices (the model replicated on each, every global
batch split across them, gradients all-reduced by XLA), or nothing at all for ``None``. Every training path
of the zoo (`zoo.training.fit`, the user-data ``rnnzoo fit``) uses it the same way::

    from zoo.distributed import data_parallel

    placement = data_parallel(devices, batch_size)   # ValueError: one sentence, when it cannot work
    with placement.scope():
        model = build_and_compile()                  # variables created inside the scope are replicated
        inputs, dropped = placement.fit_inputs(x, y, batch_size=batch_size, validation_data=(x_val, y_val))
        history = model.fit(**inputs, epochs=epochs, callbacks=callbacks)
    model = placement.local_model(model, build_and_compile)   # a plain float32 one-device copy
    card_details = placement.details(dropped)                  # count, kind, processes: for the card

Several hosts (or several processes on one host) join through ``keras.distribution.initialize`` (JAX's
distributed runtime; gloo collectives on CPU): the coordinator address, process count and process id come from
the arguments or from ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` / ``KERAS_DISTRIBUTION_NUM_PROCESSES`` /
``KERAS_DISTRIBUTION_PROCESS_ID`` (Keras' names), else ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
``JAX_PROCESS_ID``. Every process runs the same command on the same data; each feeds its share of every global
batch (`GlobalBatches`), and all end with the same weights.

Refused, in one ValueError each: the TensorFlow (or torch) backend, a global batch the device count does not
divide, a machine with one device, more devices than present, and a subset of devices across several processes.

Not supported here: model (tensor) parallelism — the zoo's models are small enough to replicate.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from zoo.backend import keras

Devices = int | Literal["all"] | None

# Where a several-process run reads its coordinates when no argument gives them: Keras' names, then JAX's.
COORDINATOR_ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "JAX_COORDINATOR_ADDRESS")
NUM_PROCESSES_ENV = ("KERAS_DISTRIBUTION_NUM_PROCESSES", "JAX_NUM_PROCESSES")
PROCESS_ID_ENV = ("KERAS_DISTRIBUTION_PROCESS_ID", "JAX_PROCESS_ID")

CPU_HINT = (
    "on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N (set before the first JAX import) "
    "presents it as N devices"
)


def parse_devices(value: str) -> Devices:
    """``--devices`` on a command line: ``"all"`` or an integer (ValueError otherwise)."""
    if value.strip().lower() == "all":
        return "all"
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"--devices must be a whole number of devices or 'all' (got {value!r})") from None


def _env(names: tuple[str, ...]) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def join_hosts(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> int:
    """Join a several-process run when a coordinator is named (argument or environment, see the module
    docstring): ``keras.distribution.initialize`` → ``jax.distributed.initialize``. Must run before anything
    touches a JAX device; calling it again (or with nothing named) does nothing. Returns the process count."""
    coordinator = coordinator or _env(COORDINATOR_ENV)
    if num_processes is None and (n := _env(NUM_PROCESSES_ENV)) is not None:
        num_processes = _int_setting(n, "process count")
    if process_id is None and (i := _env(PROCESS_ID_ENV)) is not None:
        process_id = _int_setting(i, "process id")
    if coordinator is None and num_processes is None and process_id is None:
        return _process_count()
    _require_jax("a several-process run")
    import jax

    if jax.distributed.is_initialized():
        return jax.process_count()
    if coordinator is None or num_processes is None or process_id is None:
        raise ValueError(
            "a several-process run needs the coordinator address, the process count and this process's id "
            f"(got {coordinator!r}, {num_processes!r}, {process_id!r}): pass all three (--coordinator, "
            "--num-processes, --process-id) or set KERAS_DISTRIBUTION_JOB_ADDRESSES, "
            "KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID"
        )
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(f"process id must be in 0..{num_processes - 1} (got {process_id})")
    address = coordinator.split(",")[0]
    try:  # JAX waits up to 5 minutes for every process to reach the coordinator
        keras.distribution.initialize(address, num_processes, process_id)
    except RuntimeError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(
            f"process {process_id} of {num_processes} could not join the run at {address}: {first}"
        ) from e
    return jax.process_count()


def _int_setting(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"the {what} must be a whole number (got {value!r})") from None


def _process_count() -> int:
    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count() if jax.distributed.is_initialized() else 1


def _require_jax(what: str) -> None:
    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(
            f"{what} needs the JAX backend (keras.distribution's data parallelism runs on JAX): this run uses "
            f"{backend}; set KERAS_BACKEND=jax"
        )


def check_request(devices: Devices, batch_size: int, present: int, processes: int = 1) -> int:
    """How many devices a request ``devices`` gets on a machine (or cluster) with ``present`` devices of the
    default kind, or ValueError saying why it cannot work. Pure: the refusals, testable without devices."""
    if devices == "all":
        wanted = present
    elif isinstance(devices, int) and not isinstance(devices, bool):
        wanted = devices
    else:
        raise ValueError(f"devices must be a whole number or 'all' (got {devices!r})")
    if wanted < 1:
        raise ValueError(f"devices must be at least 2 (got {wanted})")
    if present < 2:
        raise ValueError(f"only one device is present, nothing to spread the batches over ({CPU_HINT})")
    if wanted == 1:
        raise ValueError("devices=1 is plain one-device training: leave devices out (or ask for 2 or more)")
    if wanted > present:
        raise ValueError(f"{wanted} devices asked for, {present} present ({CPU_HINT})")
    if processes > 1 and wanted != present:
        raise ValueError(
            f"a {processes}-process run trains on every device of every process ({present}): use devices='all'"
        )
    if batch_size % wanted:
        raise ValueError(
            f"the global batch ({batch_size}) does not split evenly over {wanted} devices: choose a batch size "
            f"that is a multiple of {wanted}"
        )
    return wanted


@dataclass(frozen=True)
class Placement:
    """Where a run trains: ``distribution`` (a ``keras.distribution.DataParallel``, or None for plain
    one-device training), the global device count, their kind and the processes taking part."""

    distribution: Any = None
    devices: int = 1
    kind: str = ""
    platform: str = ""
    processes: int = 1
    process_id: int = 0
    virtual: bool = False  # CPU devices presented by XLA_FLAGS=--xla_force_host_platform_device_count
    # How arrays reach the devices: "keras" (Keras batches and shuffles them; one process) or "global"
    # (`GlobalBatches`: a seeded shuffle every process draws alike; always so with several processes).
    feed: Literal["keras", "global"] = "keras"

    @property
    def active(self) -> bool:
        return self.distribution is not None

    def scope(self) -> contextlib.AbstractContextManager:
        """The distribution's scope (build and compile the model, and fit, inside it); a no-op when inactive."""
        return self.distribution.scope() if self.active else contextlib.nullcontext()

    def fit_inputs(
        self,
        x: Any,
        y: Any = None,
        *,
        batch_size: int | None,
        validation_data: Any = None,
        sample_weight: Any = None,
        shuffle: bool = True,
        class_weight: dict[int, float] | None = None,
        seed: int = 0,
    ) -> tuple[dict[str, Any], dict[str, int]]:
        """``model.fit`` keyword arguments for this placement, and how many sequences were left out so that
        every batch (the last, partial one included) splits evenly over the devices: at most ``devices - 1``
        per split. Inactive: the arguments unchanged. ``x`` may be a ``keras.utils.PyDataset`` of whole
        batches (``y`` None), whose batches are cut to a multiple of the device count instead."""
        same = {"x": x, "y": y, "batch_size": batch_size, "validation_data": validation_data}
        same |= {"sample_weight": sample_weight, "shuffle": shuffle, "class_weight": class_weight}
        if not self.active:
            return same, {}
        if isinstance(x, keras.utils.PyDataset):
            out = {"x": ShareBatches(x, self.devices, self.processes, self.process_id), "shuffle": False}
            if validation_data is not None:
                if not isinstance(validation_data, keras.utils.PyDataset):
                    raise ValueError(
                        "with batches of its own (a PyDataset), the validation data must be one too"
                    )
                out["validation_data"] = ShareBatches(
                    validation_data, self.devices, self.processes, self.process_id
                )
            return out | {"class_weight": class_weight}, {}
        if batch_size is None:
            raise ValueError("data-parallel training of arrays needs a batch size")
        val = None
        if validation_data is not None:
            val = tuple(validation_data) + (None,) * (3 - len(validation_data))  # (x, y, weights or None)
        dropped = {"train": _leftover(_length(x), batch_size, self.devices)}
        if val is not None:
            dropped["validation"] = _leftover(_length(val[0]), batch_size, self.devices)
        if self.processes == 1 and self.feed == "keras":
            # Keras batches (and shuffles) the arrays itself; leave out the sequences that would not split.
            x, y, sample_weight = (_head(a, _length(x) - dropped["train"]) for a in (x, y, sample_weight))
            if val is not None:
                val = tuple(_head(a, _length(val[0]) - dropped["validation"]) for a in val)
                validation_data = val if val[2] is not None else val[:2]
            kept = {"x": x, "y": y, "sample_weight": sample_weight, "validation_data": validation_data}
            return same | kept, dropped
        # Several processes: each feeds its share of every global batch (the same shuffle in every process).
        share = {"devices": self.devices, "processes": self.processes, "process_id": self.process_id}
        train = GlobalBatches(
            x, y, sample_weight, batch_size, shuffle_seed=seed if shuffle else None, **share
        )
        out = {"x": train, "shuffle": False, "class_weight": class_weight}
        if val is not None:
            out["validation_data"] = GlobalBatches(*val, batch_size, **share)
        return out, dropped

    def local_model(self, model: keras.Model, build: Callable[[], keras.Model]) -> keras.Model:
        """``model``'s weights in a model from ``build`` made outside any distribution, with float32
        variables and arithmetic: what evaluation, the step engine and saving expect. Returns ``model`` itself
        when it is already that (inactive placement, float32 policy)."""
        if not self.active and keras.config.dtype_policy().name == "float32":
            return model
        weights = [_local_value(v) for v in model.weights]
        with float32_policy():
            fresh = build()
        fresh.set_weights(weights)
        return fresh

    def device_label(self, one_device: str) -> str:
        """The card's ``device``: ``one_device`` (`zoo.training.device_name`) prefixed by the count."""
        if not self.active:
            return one_device
        virtual = " (virtual: XLA host-platform devices)" if self.virtual else ""
        hosts = f" in {self.processes} processes" if self.processes > 1 else ""
        return f"{self.devices} × {self.kind}{virtual}{hosts}, data parallel; {one_device}"

    def details(self, dropped: dict[str, int] | None = None) -> dict[str, Any]:
        """What the card's recipe records about where and in what precision training ran: ``data_parallel``
        (nothing for plain one-device training) and ``precision`` (only under a mixed dtype policy)."""
        policy = keras.config.dtype_policy().name
        precision = {}
        if policy != "float32":
            precision["precision"] = (
                f"trained under Keras' {policy} dtype policy; shipped with float32 weights and arithmetic "
                "(zoo.distributed.Placement.local_model)"
            )
        if not self.active:
            return precision
        return precision | {
            "data_parallel": {
                "engine": f"keras.distribution.DataParallel (JAX {_jax_version()})",
                "devices": self.devices,
                "device_kind": self.kind,
                "platform": self.platform,
                "processes": self.processes,
                "virtual_cpu_devices": self.virtual,
                "per_device_batch_of_global": "global batch / devices",
                "sequences_left_out_so_batches_split_evenly": dict(dropped or {}),
            }
        }


def data_parallel(
    devices: Devices,
    batch_size: int,
    *,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> Placement:
    """The placement for a ``devices`` request and a global ``batch_size``: plain one-device training for
    ``None``; else ``keras.distribution.DataParallel`` over ``devices`` (an int >= 2, or ``"all"``) JAX devices
    of the default kind (GPU/TPU if present, else CPU), joining a several-process run first when a coordinator
    is named (arguments or environment: `join_hosts`). ValueError, one sentence, where it cannot work: not
    the JAX backend, a batch the device count does not divide, one device present, more asked than present.

    Use it around the model's construction and fit (module docstring): ``placement.scope()``,
    ``placement.fit_inputs(...)``, ``placement.local_model(...)``, ``placement.details(...)``."""
    if devices is None:
        if coordinator or num_processes or process_id is not None or _env(COORDINATOR_ENV):
            raise ValueError("a several-process run needs devices='all' (or a device count)")
        return Placement()
    _require_jax("devices=" + str(devices))
    processes = join_hosts(coordinator, num_processes, process_id)
    import jax

    present = jax.devices()
    n = check_request(devices, batch_size, len(present), processes)
    chosen = present[:n]
    distribution = keras.distribution.DataParallel(devices=chosen, auto_shard_dataset=False)
    return Placement(
        distribution,
        devices=n,
        kind=str(chosen[0].device_kind),
        platform=str(chosen[0].platform),
        processes=processes,
        process_id=jax.process_index(),
        virtual=chosen[0].platform == "cpu" and jax.local_device_count() > 1,
    )


def process_folder(root: Path) -> Path:
    """Where this process writes a model folder: ``root`` itself, or ``root/process-K`` for process K > 0 of
    a several-process run (every process ends with the same weights; process 0's copy is the one to keep)."""
    index = 0
    if keras.backend.backend() == "jax":
        import jax

        index = jax.process_index() if jax.distributed.is_initialized() else 0
    return root if index == 0 else root / f"process-{index}"


@contextlib.contextmanager
def float32_policy() -> Iterator[None]:
    """Build layers with float32 variables and arithmetic, whatever the global dtype policy (mixed precision
    trains in bfloat16; the shipped model and its step-engine parity are float32)."""
    saved = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(saved)


class GlobalBatches(keras.utils.PyDataset):
    """Global batches of arrays that every process holds whole, of which this process yields its share.

    Each epoch draws one permutation from ``shuffle_seed`` and the epoch number (the same in every process;
    None: the arrays' order), cuts it into batches of ``batch_size`` and hands process ``p`` of ``P`` rows
    ``[p * b / P, (p + 1) * b / P)`` of each batch of ``b`` rows; the last ``n % batch_size % devices`` rows are
    left out so every batch splits evenly. With ``processes=1`` it yields whole global batches, the
    reference a several-process run reproduces."""

    def __init__(
        self,
        x: Any,
        y: Any,
        sample_weight: Any,
        batch_size: int,
        devices: int,
        processes: int = 1,
        process_id: int = 0,
        shuffle_seed: int | None = None,
    ) -> None:
        super().__init__()
        n = _length(x)
        self.n = n - _leftover(n, batch_size, devices)
        if self.n == 0:
            raise ValueError(f"{n} sequences cannot fill one batch split over {devices} devices")
        self.arrays = (x, y, sample_weight)
        self.batch_size, self.processes, self.process_id = batch_size, processes, process_id
        self.shuffle_seed, self.epoch = shuffle_seed, 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if self.shuffle_seed is None:
            return np.arange(self.n)
        return np.random.default_rng([self.shuffle_seed, self.epoch]).permutation(self.n)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __getitem__(self, index: int) -> tuple:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        share = len(rows) // self.processes
        rows = rows[self.process_id * share : (self.process_id + 1) * share]
        x, y, w = (_rows(a, rows) for a in self.arrays)
        return (x, y) if w is None else (x, y, w)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


class ShareBatches(keras.utils.PyDataset):
    """A task's own batches (a ``keras.utils.PyDataset``) cut to a multiple of ``devices`` rows, of which
    process ``process_id`` of ``processes`` yields its share (all of it in a one-process run)."""

    def __init__(self, batches: keras.utils.PyDataset, devices: int, processes: int = 1, process_id: int = 0):
        super().__init__()
        self.batches, self.devices, self.processes, self.process_id = batches, devices, processes, process_id

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> tuple:
        batch = self.batches[index]
        n = _length(batch[0])
        keep = n - n % self.devices
        if keep == 0:
            raise ValueError(f"a batch of {n} sequences cannot be split over {self.devices} devices")
        share = keep // self.processes
        rows = np.arange(self.process_id * share, (self.process_id + 1) * share)
        return tuple(_rows(part, rows) for part in batch)

    def on_epoch_end(self) -> None:
        self.batches.on_epoch_end()


def _leftover(n: int, batch_size: int, devices: int) -> int:
    """Sequences to leave out of ``n`` so that the last, partial batch splits evenly over ``devices``."""
    return n % batch_size % devices


def _length(data: Any) -> int:
    return len(keras.tree.flatten(data)[0])


def _head(data: Any, n: int) -> Any:
    return None if data is None else keras.tree.map_structure(lambda a: a[:n], data)


def _rows(data: Any, rows: np.ndarray) -> Any:
    return None if data is None else keras.tree.map_structure(lambda a: np.asarray(a)[rows], data)


def _local_value(variable: Any) -> np.ndarray:
    """A variable's value on this host: a replicated JAX array's local copy (a several-process array is not
    fully addressable, so ``np.asarray`` of it would fail)."""
    value = variable.value
    if hasattr(value, "addressable_data"):
        return np.asarray(value.addressable_data(0))
    return keras.ops.convert_to_numpy(value)


def _jax_version() -> str:
    import jax

    return jax.__version__
