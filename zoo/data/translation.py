"""English -> French sentence pairs from the gettext catalogs (``.mo``) of the installed Debian packages.

Every ``/usr/share/locale/fr/LC_MESSAGES/*.mo`` file holds human translations of one program's messages. A pair
is kept when both sides are single-line, the English has at least 3 words and at most ``MAX_CHARS`` characters;
GTK mnemonic underscores (``_Open``) are removed; format placeholders (``%s``, ``%1$d``, ``{0}``) are kept as
they are (the tokenizer makes each one token, so a model can learn to copy them). English strings that occur in
several catalogs keep the translation of the first catalog in file-name order (one target per source). The
corpus is the catalogs of ``PINNED_CATALOGS`` (those the shipped model was trained on), not whatever else
another installed package adds.

The owning package and its installed version are recorded for every catalog used (``dpkg -S`` and
``dpkg-query -W``), so the card pins the exact corpus. Parsed once, cached in the user cache.
"""

from __future__ import annotations

import gettext
import hashlib
import json
import re
import subprocess
from pathlib import Path

from zoo.data._files import cache_dir

LOCALE_DIR = Path("/usr/share/locale/fr/LC_MESSAGES")
MAX_CHARS = 160
_VERSION = 1  # bump when the filtering changes, so a stale cache is not reused
_MNEMONIC = re.compile(r"(?<![\w%])_(?=\w)")
# The catalogs the corpus is made of, pinned by name: installing another Debian package (festival, needed by the
# speech voices, pulls in alsa-utils and its catalog) must not change the pairs, which would reshuffle the whole
# split and the vocabularies a shipped model was trained with. A catalog of these that is missing is an error.
PINNED_CATALOGS = tuple(
    f"{name}.mo"
    for name in """
    Linux-PAM PackageKit adduser appstream apt at-spi2-core avahi bash bfd binutils coreutils diffutils
    dpkg-dev dpkg findutils gas gawk gdk-pixbuf gettext-runtime gettext-tools git glib20 gnupg2 gnutls30
    gold gprof grep gsettings-desktop-schemas gstreamer-1.0 gtk20-properties gtk20 initdb-15 iso_15924
    iso_3166-1 iso_3166-2 iso_3166-3 iso_4217 iso_639-2 iso_639-3 iso_639-5 ld libapt-pkg6.0 libc
    libidn2 libpq5-15 make man-db-gnulib man-db net-tools opcodes pg_amcheck-15 pg_archivecleanup-15
    pg_basebackup-15 pg_checksums-15 pg_controldata-15 pg_ctl-15 pg_dump-15 pg_resetwal-15 pg_rewind-15
    pg_test_fsync-15 pg_test_timing-15 pg_upgrade-15 pg_verifybackup-15 pg_waldump-15 pgscripts-15
    plpgsql-15 popt postgres-15 procps-ng psmisc psql-15 python-apt sed shadow shared-mime-info
    software-properties systemd tar wget xkeyboard-config xz
    """.split()
)

DATASET = {
    "name": "gettext en->fr message catalogs of the installed Debian packages",
    "origin": f"{LOCALE_DIR}/<pinned>.mo ({len(PINNED_CATALOGS)} catalogs, one per program; packages and versions listed under 'packages')",
    "licence": "each catalog carries its package's licence (mostly GPL/LGPL; see /usr/share/doc/<package>/copyright)",
    "what": "real human translations of SOFTWARE MESSAGES (error messages, option help, menu labels, "
    "language and country names): a narrow domain, not general English",
}


def _clean(text: str) -> str:
    return " ".join(_MNEMONIC.sub("", text).split())


def _keep(en: str, fr: str) -> bool:
    if not en or not fr or "\n" in en or "\n" in fr or "\t" in en or "\t" in fr:
        return False
    return len(en.split()) >= 3 and len(en) <= MAX_CHARS and len(fr) <= MAX_CHARS * 3 // 2


def _packages(files: list[Path]) -> dict[str, dict]:
    """``{catalog file name: {"package", "version"}}`` from dpkg; ``"unknown"`` where dpkg does not know it."""
    owners: dict[str, str] = {}
    done = subprocess.run(["dpkg", "-S", *map(str, files)], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        pkg, _, path = line.partition(": ")
        owners[Path(path.strip()).name] = pkg.split(":")[0].split(",")[0].strip()
    names = sorted(set(owners.values()))
    versions: dict[str, str] = {}
    if names:
        q = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *names],
            capture_output=True,
            text=True,
            check=False,
        )
        for line in q.stdout.splitlines():
            pkg, _, ver = line.partition(" ")
            versions[pkg] = ver.strip()
    return {
        f.name: {
            "package": owners.get(f.name, "unknown"),
            "version": versions.get(owners.get(f.name, ""), "?"),
        }
        for f in files
    }


def catalogs() -> list[Path]:
    """The pinned catalogs in file-name order; other ``.mo`` files in ``LOCALE_DIR`` are ignored."""
    files = sorted(LOCALE_DIR / name for name in PINNED_CATALOGS)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} pinned French gettext catalog(s) missing under {LOCALE_DIR} (e.g. {missing[0]}): "
            "install the Debian packages listed on the translate-en-fr-gru card"
        )
    return files


def pairs() -> dict:
    """``{"pairs": [[en, fr, catalog], …], "catalogs": {file: {package, version, pairs}}}`` (cached)."""
    files = catalogs()
    key = hashlib.sha256(
        json.dumps([_VERSION, MAX_CHARS] + [(f.name, f.stat().st_size) for f in files]).encode()
    ).hexdigest()[:16]
    path = cache_dir("text") / f"gettext-en-fr-{key}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    owners = _packages(files)
    seen: set[str] = set()
    rows: list[list[str]] = []
    used: dict[str, dict] = {}
    for f in files:
        with open(f, "rb") as fh:
            catalog = gettext.GNUTranslations(fh)._catalog
        n = 0
        for en, fr in sorted((k, v) for k, v in catalog.items() if isinstance(k, str)):
            if not isinstance(fr, str) or not _keep(en, fr):
                continue
            en, fr = _clean(en), _clean(fr)
            if len(en.split()) < 3 or en in seen:
                continue
            seen.add(en)
            rows.append([en, fr, f.name])
            n += 1
        if n:
            used[f.name] = {**owners[f.name], "pairs": n}
    data = {"pairs": rows, "catalogs": used}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return data
