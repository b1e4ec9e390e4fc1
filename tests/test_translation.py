"""Translation: gettext corpus, tokenizer round trip, greedy == beam width 1, shipped model vs card, CLI errors."""

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from zoo import translation as tr
from zoo.builder import build_seq2seq
from zoo.tasks.translation import EN_FR

NAME = "translate-en-fr-gru"
ROOT = Path(__file__).resolve().parent.parent
shipped = pytest.mark.skipif(NAME not in zoo.list_models(), reason=f"{NAME} is not trained yet")


def test_corpus_pairs_are_clean_pinned_and_the_split_is_disjoint() -> None:
    from zoo.data.translation import pairs

    data = pairs()
    rows = data["pairs"]
    assert len(rows) > 20_000
    for en, fr, catalog in rows[::50]:
        assert len(en.split()) >= 3 and fr and "\n" not in en + fr and catalog in data["catalogs"]
    assert len({en for en, _, _ in rows}) == len(rows)  # one target per source
    for info in data["catalogs"].values():
        assert info["package"] != "unknown" and info["version"] not in ("", "?")
    s = EN_FR._split()
    parts = [{en for en, _, _ in s[k]} for k in ("train", "val", "test")]
    assert [len(p) for p in parts] == [len(s["train"]), 1000, 1500]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert EN_FR._split() is s and EN_FR.test_data()[0][:3] == [r[0] for r in s["test"][:3]]  # cached


def test_tokenizer_round_trips_text_and_keeps_placeholders_whole() -> None:
    for text in ["Cannot open file '%s': %s", "l'option « %1$s » n'est pas valide.", "{0} files (%5.2f%%)"]:
        assert tr.join(tr.split(text)) == text
    assert "￭%1$s￭" not in tr.split("option « %1$s »") and "%1$s" in tr.split("option « %1$s »")
    vocab = tr.Vocab(["open", "file"])
    assert vocab.encode("open the file") == [4, tr.UNK, 5]
    assert vocab.decode([4, 5, tr.EOS, 4]) == "open file"


def _random_translator(seed: int = 0) -> tr.Translator:
    keras.utils.set_random_seed(seed)
    model = build_seq2seq(30, 25, units=8, embedding=6)
    return tr.Translator(
        model, tr.Vocab([f"s{i}" for i in range(26)]), tr.Vocab([f"t{i}" for i in range(21)]), 12
    )


def test_beam_width_one_is_greedy_and_wider_beams_score_no_worse() -> None:
    t = _random_translator()
    src = np.random.default_rng(0).integers(4, 30, size=(16, 9)).astype("int32")
    src[:5, 6:] = 0  # some shorter sources (padding masked)
    enc, state = (np.asarray(a) for a in t._encoder(src))
    g = tr.greedy(t._step, src, enc, state, 12)
    assert tr.beam_search(t._step, src, enc, state, 12, 1) == g
    assert t.decode_ids(src, beam=1) == g
    assert all(len(ids) <= 12 for ids in tr.beam_search(t._step, src, enc, state, 12, 3))


def test_step_decoder_matches_the_teacher_forced_model() -> None:
    """The one-step decoder built from the model's layers gives the full model's probabilities."""
    t = _random_translator(1)
    src = np.array([[5, 9, 7, 0, 0], [4, 4, 8, 12, 6]], "int32")
    tgt = np.array([[tr.BOS, 6, 9, 11], [tr.BOS, 7, 7, 5]], "int32")
    full = np.asarray(t.model([src, tgt], training=False))
    enc, state = (np.asarray(a) for a in t._encoder(src))
    for step in range(tgt.shape[1]):
        probs, state = (np.asarray(a) for a in t._step([tgt[:, step : step + 1], state, enc, src]))
        assert np.abs(probs - full[:, step]).max() < 1e-5


@shipped
@pytest.mark.slow  # decodes the 1,500 test sentences greedily and with beam 4 (about 25 s)
def test_shipped_model_re_evaluates_to_its_card() -> None:
    card = zoo.card(NAME)
    translator = tr.load_translator(NAME)
    fresh = EN_FR.evaluate(translator.model, None, "seq2seq", beams=(1,))
    for key, tol in (("bleu", 0.2), ("chrf", 0.2), ("exact_match", 0.002)):
        assert abs(fresh[key] - card.test_metrics["decoding"]["greedy"][key]) <= tol, key
    assert card.test_metrics["bleu"] > card.baselines["source_copy"]["bleu"]
    details = card.dataset.details
    assert {p["version"] for p in details["packages"].values()} and "SOFTWARE" in details["what"]
    assert zoo.translate(NAME, "Cannot open file", beam=1) == translator.translate(["Cannot open file"])


@shipped
def test_cli_translates_and_bad_input_is_one_line(capsys) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "rnnzoo.cli", "translate", NAME, "Cannot open file", "--beam", "3"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert ok.returncode == 0 and len(ok.stdout.strip().splitlines()) == 1, ok.stderr
    from rnnzoo.cli import main

    for sentence, words in (("   ", "is empty"), ("word " * 60, "at most 40")):
        assert main(["translate", NAME, sentence]) == 2  # in process: main() is what turns errors into a line
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and words in lines[0]
    assert main(["translate", NAME]) == 2 and main(["translate", NAME, "a b c", "--beam", "0"]) == 2


def test_corpus_is_the_pinned_catalogs_whatever_else_is_installed(tmp_path, monkeypatch) -> None:
    """A catalog another Debian package adds (alsa-utils comes with festival) must not reshuffle the split."""
    from zoo.data import translation as data

    for name in data.PINNED_CATALOGS:
        (tmp_path / name).symlink_to(data.LOCALE_DIR / name)
    (tmp_path / "alsa-utils.mo").write_bytes(b"")  # an extra catalog, sorted among the pinned ones
    monkeypatch.setattr(data, "LOCALE_DIR", tmp_path)
    assert [f.name for f in data.catalogs()] == sorted(data.PINNED_CATALOGS)
    (tmp_path / "bash.mo").unlink()
    with pytest.raises(FileNotFoundError, match="1 pinned French gettext catalog"):
        data.catalogs()
