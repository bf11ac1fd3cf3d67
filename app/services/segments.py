"""How many SMS segments a message costs (R-44, R-49). Pure functions, no database.

The text that goes out is ``signature + body + opt-out line``: the signature 【和兴证券】
is prefixed automatically and commercial categories end with the opt-out line (default
回T退订), both counted. Text made only of GSM 03.38 characters travels as GSM-7: 160
septets in one SMS, 153 per part of a long SMS, characters of the extension table
(``^{}[]~|€\\`` and form feed) taking two septets. Anything else (Chinese, 【】) is UCS-2:
70 characters in one SMS, 67 per part, characters outside the BMP taking two. The
default signature is UCS-2, so every real message of ours is UCS-2; GSM-7 is counted
properly all the same for a configured Latin signature and for the tests.

Placeholders ``{name}`` and ``{branch}`` are counted at their longest realistic value:
a customer name of ``NAME_MAX_CHARS`` Chinese characters and the longest branch name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_SEGMENTS = 10
# Chinese personal names run 2-4 characters; transliterated minority names reach 8-10.
NAME_MAX_CHARS = 10
PLACEHOLDERS = ("name", "branch")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


@dataclass(frozen=True)
class SegmentInfo:
    text: str  # what is counted: signature + body (placeholders expanded) + opt-out line
    chars: int  # characters as people count them
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    encoding: str  # "GSM-7" | "UCS-2"
    segments: int
    per_segment: int  # 160/153 or 70/67, whichever applies to this length
    remaining: int  # units left before the next segment begins
    unknown_placeholders: tuple[str, ...] = ()

    @property
    def over_limit(self) -> bool:
        return self.segments > MAX_SEGMENTS


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def _gsm_units(ch: str) -> int:
    return 2 if ch in GSM7_EXTENSION else 1


def _ucs2_units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _count_parts(text: str, unit_of, part_size: int) -> int:
    """Parts of ``part_size`` units, never splitting a character's units across parts
    (an escape pair or a surrogate pair goes whole into the next part)."""
    parts, used = 1, 0
    for ch in text:
        n = unit_of(ch)
        if used + n > part_size:
            parts += 1
            used = 0
        used += n
    return parts


def count(text: str) -> tuple[str, int, int, int]:
    """(encoding, units, segments, per_segment) of a finished text."""
    if is_gsm7(text):
        unit_of, single, part, encoding = _gsm_units, GSM7_SINGLE, GSM7_PART, "GSM-7"
    else:
        unit_of, single, part, encoding = _ucs2_units, UCS2_SINGLE, UCS2_PART, "UCS-2"
    units = sum(unit_of(ch) for ch in text)
    if units <= single:
        return encoding, units, 1, single
    return encoding, units, _count_parts(text, unit_of, part), part


def placeholders_in(body: str) -> list[str]:
    return _PLACEHOLDER.findall(body or "")


def expand(body: str, values: dict[str, str]) -> str:
    """Replace known placeholders by ``values``; unknown ones stay as written."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), body or "")


def compose(body: str, *, commercial: bool, opt_out_line: str, signature: str) -> str:
    """The text as it goes out (before placeholders are filled): signature first, the
    opt-out line last for commercial categories (R-49)."""
    text = f"{signature}{body or ''}"
    if commercial and opt_out_line:
        text += opt_out_line
    return text


def measure(
    body: str, *, commercial: bool, opt_out_line: str, signature: str, longest_branch: str
) -> SegmentInfo:
    """Count the segments of ``body`` at its longest realistic length."""
    unknown = tuple(sorted({p for p in placeholders_in(body) if p not in PLACEHOLDERS}))
    longest = {"name": "名" * NAME_MAX_CHARS, "branch": longest_branch or ""}
    text = compose(
        expand(body, longest), commercial=commercial, opt_out_line=opt_out_line, signature=signature
    )
    encoding, units, segments, per_segment = count(text)
    if segments == 1:
        remaining = per_segment - units
    else:
        # Units left in the last part, the same way _count_parts fills them.
        unit_of = _gsm_units if encoding == "GSM-7" else _ucs2_units
        used = 0
        for ch in text:
            n = unit_of(ch)
            if used + n > per_segment:
                used = 0
            used += n
        remaining = per_segment - used
    return SegmentInfo(
        text=text,
        chars=len(text),
        units=units,
        encoding=encoding,
        segments=segments,
        per_segment=per_segment,
        remaining=remaining,
        unknown_placeholders=unknown,
    )
