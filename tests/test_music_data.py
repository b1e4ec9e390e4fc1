"""Bach chorales as piano rolls: lossless MIDI round trip on the grid, and a split with no chorale in two parts."""

import mido
import numpy as np
import pytest

from zoo.data import music


@pytest.fixture(scope="module")
def splits() -> dict[str, music.Chorales]:
    return {s: music.load_split(s) for s in music.SPLITS}


def test_chorale_to_frames_to_midi_to_frames_is_lossless(tmp_path) -> None:
    from music21 import corpus

    score = corpus.parse("bach/bwv269")  # 3/4 with a pickup, eighth notes and a fermata
    roll = music.encode(score)
    assert roll.shape[1] == 88 and roll.dtype == np.uint8
    # Four voices at every grid point where the score has four sounding notes (no rests in this chorale).
    assert (roll.sum(1) <= 4).all() and (roll.sum(1) >= 3).mean() > 0.95
    assert np.array_equal(music.midi_to_roll(music.roll_to_midi(roll, tmp_path / "a.mid")), roll)
    # The file is standard MIDI: one note per run of frames of a key, at 480 ticks per quarter note.
    midi = mido.MidiFile(tmp_path / "a.mid")
    ons = [m for m in midi.tracks[0] if m.type == "note_on" and m.velocity > 0]
    runs = roll[:1].sum() + (roll[1:] & ~roll[:-1].astype(bool)).sum()
    assert len(ons) == runs and midi.ticks_per_beat == 480


def test_every_test_chorale_round_trips_through_midi(tmp_path, splits) -> None:
    for name, roll in zip(splits["test"].names, splits["test"].rolls, strict=True):
        path = music.roll_to_midi(roll, tmp_path / f"{name}.mid")
        back = music.midi_to_roll(path)
        # A chorale ending on a rest would come back shorter; none in the corpus does.
        assert np.array_equal(back, roll), name


def test_split_is_by_chorale_fixed_and_disjoint(splits) -> None:
    names = {s: set(c.names) for s, c in splits.items()}
    assert not (names["train"] & names["test"]) and not (names["train"] & names["validation"])
    assert not (names["validation"] & names["test"])
    # Same music under another name (or transposed) never sits in two splits either.
    keys = {s: {music._content_key(r) for r in c.rolls} for s, c in splits.items()}
    assert not (keys["train"] & keys["test"]) and not (keys["validation"] & keys["test"])
    sizes = [len(splits[s].names) for s in music.SPLITS]
    assert sizes == [262, 33, 33]
    assert music.split_indices(328)["test"].tolist() == music.split_indices(328)["test"].tolist()


def test_transposition_stays_on_the_keyboard() -> None:
    roll = np.zeros((4, 88), np.uint8)
    roll[:, [0, 40]] = 1
    assert music.transpose(roll, -1) is None
    up = music.transpose(roll, 2)
    assert up is not None and np.flatnonzero(up[0]).tolist() == [2, 42]
