"""Bach chorales from the music21 corpus (offline) as 88-key piano rolls, and piano rolls to and from MIDI.

A chorale becomes a ``[T, 88]`` array of 0/1 frames on a fixed grid (an eighth note by default): frame ``t``
holds the pitches sounding at time ``t * grid`` quarter notes, key ``k`` is MIDI pitch ``21 + k`` (A0..C8), as
in the JSB Chorales benchmark. Sampling at grid points means a note shorter than the grid that falls between two
points is dropped, and a pitch re-struck without a gap merges with the one before it (a piano roll cannot tell
them apart); both are properties of the benchmark's encoding.

Parsing the corpus is slow (~0.3 s a chorale), so it is parsed once and cached in the user cache
(``~/.cache/rnn-zoo/music``), in a file named by the music21 version and the encoding settings; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.data._files import cache_dir

LOWEST_MIDI = 21  # A0, key 0 of the 88-key roll
N_KEYS = 88
GRID = 0.5  # quarter notes per frame: an eighth note
SPLIT_SEED = 0  # fixed: every cell and every training seed sees the same chorales in each split
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
SPLITS = ("train", "validation", "test")
_ENCODING_VERSION = 1  # bump when encode() changes, so stale caches are not reused

CHORALES = {
    "name": "Bach chorales, 4-part (music21 corpus, Riemenschneider numbering)",
    "origin": "music21 package files music21/corpus/bach/bwv*.mxl, read with "
    "music21.corpus.chorales.Iterator(numberingSystem='riemenschneider'); the JSB Chorales benchmark's source",
    "what": "chorale harmonisations by J. S. Bach (soprano, alto, tenor, bass); chorales with other than 4 "
    "parts are left out",
    "licence": "music21 corpus (BSD-3-Clause package); the scores are public domain",
}


@dataclass(frozen=True)
class Chorales:
    """The encoded chorales of one split: ``rolls[i]`` is ``[T_i, 88]`` uint8, ``names[i]`` e.g. ``"bwv269"``."""

    names: list[str]
    rolls: list[np.ndarray]


def chorale_files() -> list[str]:
    """The corpus paths of the Riemenschneider chorales (``"bach/bwv269"``…), without parsing them; 371
    entries, some of which name the same file twice."""
    from music21 import corpus

    return list(corpus.chorales.Iterator(numberingSystem="riemenschneider", returnType="filename"))


def encode(score: object, grid: float = GRID) -> np.ndarray:
    """A music21 score -> piano roll ``[T, 88]`` uint8: 1 where a pitch sounds at time ``t * grid``."""
    flat = score.flatten()  # type: ignore[attr-defined]
    n_frames = math.ceil(float(flat.highestTime) / grid - 1e-9)
    roll = np.zeros((n_frames, N_KEYS), np.uint8)
    for element in flat.notes:
        start = float(element.offset)
        end = start + float(element.quarterLength)
        # Grid points t*grid with start <= t*grid < end; the 1e-9 absorbs float offsets like 0.49999.
        first, stop = math.ceil(start / grid - 1e-9), math.ceil(end / grid - 1e-9)
        for p in element.pitches:
            key = p.midi - LOWEST_MIDI
            if not 0 <= key < N_KEYS:
                raise ValueError(f"pitch {p} lies outside the 88-key range")
            roll[first:stop, key] = 1
    return roll


def _cache_path(grid: float) -> Path:
    import music21

    settings = {"music21": music21.__version__, "grid": grid, "encoding": _ENCODING_VERSION}
    tag = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return cache_dir("music") / f"chorales-m21-{music21.__version__}-grid{grid}-{tag}.npz"


def _content_key(roll: np.ndarray) -> bytes:
    """Equal for two rolls that are the same music, possibly transposed (lowest used key moved to 0)."""
    used = np.flatnonzero(roll.any(0))
    low = used[0] if len(used) else 0
    return roll.shape[0].to_bytes(4, "little") + np.roll(roll, -low, axis=1).tobytes()


def load_corpus(grid: float = GRID) -> dict:
    """Every distinct 4-part chorale, encoded, in corpus order: ``{"names", "rolls", "dropped"}``.

    Parsed once (about two minutes) and cached. Left out, and listed in ``dropped``: chorales not in 4 parts,
    and repeats — an entry naming a file seen before, or the same music as an earlier chorale (possibly
    transposed) — so that no chorale can sit in two splits.
    """
    path = _cache_path(grid)
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            bounds = np.cumsum(z["lengths"])[:-1]
            return {
                "names": z["names"].tolist(),
                "rolls": np.split(z["frames"], bounds),
                "dropped": json.loads(str(z["dropped"])),
            }
    from music21 import corpus

    names, rolls, seen, visited = [], [], {}, set()
    dropped: dict[str, list[str]] = {"not_4_parts": [], "repeated_entry": [], "same_music_as_earlier": []}
    for file in chorale_files():
        name = file.rsplit("/", 1)[-1]
        if name in visited:
            dropped["repeated_entry"].append(name)
            continue
        visited.add(name)
        score = corpus.parse(file)
        if len(score.parts) != 4:
            dropped["not_4_parts"].append(name)
            continue
        roll = encode(score, grid)
        key = _content_key(roll)
        if key in seen:
            dropped["same_music_as_earlier"].append(f"{name} (= {seen[key]})")
            continue
        seen[key] = name
        names.append(name)
        rolls.append(roll)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        frames=np.concatenate(rolls),
        lengths=np.array([len(r) for r in rolls]),
        names=np.array(names),
        dropped=np.array(json.dumps(dropped)),
    )
    tmp.replace(path)  # atomic: a parse interrupted half-way never leaves a truncated cache
    return {"names": names, "rolls": rolls, "dropped": dropped}


def split_indices(n: int, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Chorale indices of each split: a seeded shuffle cut 80/10/10 (by chorale, never by frame)."""
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = round(n * SPLIT_FRACTIONS[0]), round(n * SPLIT_FRACTIONS[1])
    return {
        "train": order[:n_train],
        "validation": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }


def load_split(split: str, grid: float = GRID) -> Chorales:
    """The chorales of ``split`` ("train", "validation" or "test"), encoded, in a fixed order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    data = load_corpus(grid)
    index = split_indices(len(data["names"]))[split]
    return Chorales(names=[data["names"][i] for i in index], rolls=[data["rolls"][i] for i in index])


def transpose(roll: np.ndarray, semitones: int) -> np.ndarray | None:
    """The roll shifted by ``semitones`` along the keys, or None when a note would leave the 88 keys."""
    if semitones == 0:
        return roll
    used = np.flatnonzero(roll.any(0))
    if len(used) and not (0 <= used[0] + semitones and used[-1] + semitones < N_KEYS):
        return None
    return np.roll(roll, semitones, axis=1)


# ---------------------------------------------------------------------------------------------------------
# MIDI: one track, one note per run of consecutive frames of a key.

TICKS_PER_QUARTER = 480
CHURCH_ORGAN = 19  # General MIDI program (0-based): the chorales' instrument


def roll_to_midi(
    roll: np.ndarray, path: str | Path, grid: float = GRID, bpm: float = 80.0, program: int = CHURCH_ORGAN
) -> Path:
    """Write a piano roll ``[T, 88]`` as a standard MIDI file (deterministic bytes for the same roll)."""
    import mido

    roll = np.asarray(roll) > 0
    ticks = round(grid * TICKS_PER_QUARTER)
    padded = np.vstack([np.zeros((1, N_KEYS), bool), roll, np.zeros((1, N_KEYS), bool)]).astype(np.int8)
    change = np.diff(padded, axis=0)  # +1 where a key starts sounding at frame t, -1 where it stops
    events = []  # (tick, order, key): note-offs (order 0) before note-ons (order 1) at the same tick
    for t, key in zip(*np.nonzero(change), strict=True):
        events.append((int(t) * ticks, 0 if change[t, key] < 0 else 1, int(key)))
    events.sort()
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    track.append(mido.Message("program_change", program=program, time=0))
    now = 0
    for tick, on, key in events:
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=key + LOWEST_MIDI, velocity=80 if on else 0, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(ticks_per_beat=TICKS_PER_QUARTER)
    midi.tracks.append(track)
    path = Path(path)
    midi.save(str(path))
    return path


def midi_to_roll(path: str | Path, grid: float = GRID) -> np.ndarray:
    """Read a MIDI file back into a piano roll ``[T, 88]`` uint8 on ``grid`` (all tracks and channels)."""
    import mido

    midi = mido.MidiFile(str(path))
    step = grid * midi.ticks_per_beat
    notes, sounding = [], {}
    for track in midi.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                sounding[(msg.channel, msg.note)] = tick
            elif msg.type in ("note_off", "note_on") and (msg.channel, msg.note) in sounding:
                notes.append((sounding.pop((msg.channel, msg.note)), tick, msg.note))
    n_frames = max((math.ceil(end / step - 1e-9) for _, end, _ in notes), default=0)
    roll = np.zeros((n_frames, N_KEYS), np.uint8)
    for start, end, note in notes:
        roll[math.ceil(start / step - 1e-9) : math.ceil(end / step - 1e-9), note - LOWEST_MIDI] = 1
    return roll
