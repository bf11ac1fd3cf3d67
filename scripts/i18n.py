"""Translation catalogs: ``extract`` (update zh and en from the code), ``fill`` (add zh
translations from a JSON object on stdin), ``missing`` (list untranslated zh msgids,
exit 1 if any), ``compile`` (build the .mo files the app loads).

English msgids are the source; the zh catalog carries the Simplified Chinese the UI
shows by default, and the en catalog stays empty (gettext falls back to the msgid).
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "app" / "translations"
POT = ROOT / "instance" / "messages.pot"


def _po(lang: str) -> Path:
    return TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po"


def extract() -> None:
    POT.parent.mkdir(exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            str(ROOT / "babel.cfg"),
            "-k",
            "_l",
            "-k",
            "lazy_gettext",
            "--no-location",
            "--sort-output",
            "-o",
            str(POT),
            ".",
        ],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "update",
            "-i",
            str(POT),
            "-d",
            str(TRANSLATIONS),
            "--no-fuzzy-matching",
            "--ignore-obsolete",
        ],
        check=True,
        capture_output=True,
    )


def missing() -> list[str]:
    with _po("zh").open("rb") as fh:
        catalog = read_po(fh)
    return [m.id for m in catalog if m.id and not m.string]


def fill(mapping: dict[str, str]) -> int:
    with _po("zh").open("rb") as fh:
        catalog = read_po(fh)
    n = 0
    for message in catalog:
        if message.id in mapping:
            message.string = mapping[message.id]
            message.flags.discard("fuzzy")
            n += 1
    with _po("zh").open("wb") as fh:
        write_po(fh, catalog, width=0, omit_header=False)
    return n


def compile_all() -> None:
    for lang in ("zh", "en"):
        with _po(lang).open("rb") as fh:
            catalog = read_po(fh)
        with _po(lang).with_suffix(".mo").open("wb") as fh:
            write_mo(fh, catalog)


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    # Several people (or helpers) may update the catalogs at once: one at a time.
    _lock = (ROOT / "instance").joinpath("i18n.lock")
    _lock.parent.mkdir(exist_ok=True)
    _lock_fh = _lock.open("w")
    fcntl.flock(_lock_fh, fcntl.LOCK_EX)
    if cmd == "extract":
        extract()
        print(f"{len(missing())} zh msgids untranslated")
    elif cmd == "fill":
        print(f"filled {fill(json.load(sys.stdin))}")
    elif cmd == "missing":
        ids = missing()
        print("\n".join(ids))
        sys.exit(1 if ids else 0)
    elif cmd == "compile":
        compile_all()
    else:
        print(__doc__)
        sys.exit(2)
