"""Ensembles (zoo.ensemble): members stacked in one Keras model, and the CTC vote that combines them."""

from dataclasses import replace

import keras
import numpy as np
import pytest
from conftest import tiny_model

from zoo.ensemble import stack_members
from zoo.speech import ctc_decode


def test_stacked_members_answer_exactly_as_each_alone_and_survive_a_safe_reload(tmp_path) -> None:
    members = [tiny_model(seed=s) for s in (0, 1, 2)]
    x = np.random.default_rng(0).normal(size=(4, 9, 3)).astype("float32")
    ensemble = stack_members(members, "trio")
    out = np.asarray(ensemble.predict(x, verbose=0))
    assert out.shape == (4, 3, 9, 4)  # [N, members, T, classes]
    for i, m in enumerate(members):
        np.testing.assert_array_equal(out[:, i], np.asarray(m.predict(x, verbose=0)))
    assert np.abs(out[:, 0] - out[:, 1]).max() > 1e-3  # different seeds: different members
    ensemble.save(tmp_path / "trio.keras")
    again = keras.models.load_model(tmp_path / "trio.keras", safe_mode=True, compile=False)
    np.testing.assert_array_equal(np.asarray(again.predict(x, verbose=0)), out)
    assert again.count_params() == sum(m.count_params() for m in members)


def test_stacking_refuses_what_it_cannot_stack() -> None:
    with pytest.raises(ValueError, match="at least two members"):
        stack_members([tiny_model()], "one")
    with pytest.raises(ValueError, match="differ in input or output shape"):
        stack_members([tiny_model(n_classes=4), tiny_model(n_classes=5)], "mixed")
    inputs = keras.Input((None, 3))
    a, b = keras.layers.Dense(4, name="a")(inputs), keras.layers.Dense(4, name="b")(inputs)
    branched = keras.Model(inputs, keras.layers.Add(name="sum")([a, b]))
    with pytest.raises(ValueError, match="not a chain"):
        stack_members([branched, branched], "branched")


def test_ctc_decoding_of_an_ensemble_votes_on_the_members_transcripts() -> None:
    """Three members' per-frame outputs [N=1, 3, T, C]: two hear 3 1, one hears 3 7 -> 3 1."""

    def frames(labels: list[int]) -> np.ndarray:
        p = np.full((len(labels), 9), 0.01)
        p[np.arange(len(labels)), labels] = 0.92
        return np.log(p / p.sum(-1, keepdims=True))

    stacked = np.stack([frames([3, 0, 1, 0]), frames([0, 3, 0, 1]), frames([3, 0, 7, 0])])[None]
    assert ctc_decode(stacked) == [[3, 1]]
    assert [ctc_decode(stacked[:, m]) for m in range(3)] == [[[3, 1]], [[3, 1]], [[3, 7]]]
    # A frame-wise average instead would split the spikes of the first two members and lose them to the blank.
    mean = np.log(np.exp(stacked[0, :2]).mean(0))[None]
    assert ctc_decode(mean) != [[3, 1]]


def test_only_a_ctc_model_can_be_an_ensemble() -> None:
    from zoo.registry import get_spec

    assert get_spec("digits-ctc-bigru").with_overrides(members=1).recipe.members == 1
    with pytest.raises(ValueError, match="only a CTC model"):
        get_spec("activity-gru-causal").with_overrides(members=2)
    with pytest.raises(ValueError, match="members must be at least 1"):
        replace(get_spec("digits-ctc-bigru").recipe, members=0)


def test_stacking_script_refuses_folders_that_are_not_the_recipes_members(
    tmp_path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Members must be the registry recipe's runs, seed by seed, and verified against their cards."""
    import shutil

    from conftest import load_script

    from zoo import cards

    script = load_script("stack_members")
    member = tmp_path / "s0" / "digits-ctc-bigru"
    shutil.copytree(cards.model_dir("digits-ctc-bigru"), member)

    def refusal(*argv: str) -> str:
        monkeypatch.setattr("sys.argv", ["stack_members.py", *argv])
        with pytest.raises(SystemExit) as stop:
            script.main()
        assert stop.value.code == 2
        (line,) = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
        return line

    folders = [str(tmp_path / "s0")] * 3
    assert "has 3 members; 2 folders given" in refusal("digits-ctc-bigru", *folders[:2])
    # the shipped model is the stacked ensemble itself, not a member
    assert "is not member 0 of digits-ctc-bigru: it is an ensemble itself" in refusal(
        "digits-ctc-bigru", *folders
    )
    (member / "model.keras").write_bytes(b"not a model")
    assert "does not match its card" in refusal("digits-ctc-bigru", *folders)
    assert "unknown model 'digits-ctc-bigrus'; did you mean digits-ctc-bigru" in refusal(
        "digits-ctc-bigrus", *folders
    )
