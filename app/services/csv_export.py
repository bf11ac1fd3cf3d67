"""CSV export shared by every download: Excel-friendly and safe against formula injection."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


def safe_cell(value) -> str:
    """A cell that a spreadsheet shows as text, never runs as a formula (CWE-1236)."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def stream_csv(header: list[str], rows: Iterable[Iterable]) -> Iterable[str]:
    """Yield a UTF-8 CSV with BOM (so Excel opens Chinese text correctly), row by row."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    yield "\ufeff"
    writer.writerow([safe_cell(h) for h in header])
    yield buf.getvalue()
    for row in rows:
        buf.seek(0)
        buf.truncate(0)
        writer.writerow([safe_cell(c) for c in row])
        yield buf.getvalue()
