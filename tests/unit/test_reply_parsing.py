"""Reading customers' replies (R-34): trimmed, case-folded, full-width folded."""

import pytest

from app.services.replies import dedupe_key, normalize_reply, parse_reply


@pytest.mark.parametrize(
    "text, intent",
    [
        ("Y", "agree"),
        ("y", "agree"),
        (" Y ", "agree"),
        ("Ｙ", "agree"),
        ("ｙ", "agree"),
        ("同意", "agree"),
        (" 同意。", "agree"),
        ("'Y'", "agree"),
        ("“Y”", "agree"),
        ("Y!", "agree"),
        ("\tY\r\n", "agree"),
        ("　Ｙ　", "agree"),
        ("N", "refuse"),
        ("n", "refuse"),
        ("Ｎ", "refuse"),
        ("不需要", "refuse"),
        ("退订", "refuse"),
        ("TD", "refuse"),
        ("td", "refuse"),
        ("Td", "refuse"),
        ("ＴＤ", "refuse"),
        ("T", "refuse"),
        ("t", "refuse"),
        ("R", "refuse"),
        ("r", "refuse"),
        ("STOP", "refuse"),
        ("stop", "refuse"),
        ("Stop", "refuse"),
        ("ＳＴＯＰ", "refuse"),
        (" 退订 ", "refuse"),
        ("YES", "other"),
        ("no", "other"),
        ("好的", "other"),
        ("不同意", "other"),
        ("Y N", "other"),
        ("退订谢谢", "other"),
        ("", "other"),
        (None, "other"),
        ("   ", "other"),
        ("YY", "other"),
        ("请问怎么开户", "other"),
        ("T" * 10_000, "other"),
        ("S T O P", "other"),
    ],
)
def test_reply_table(text, intent):
    assert parse_reply(text) == intent


def test_normalisation_folds_width_and_case():
    assert normalize_reply("  ＳＴＯＰ ") == "stop"
    assert normalize_reply("ＴＤ。") == "td"


def test_dedupe_key_prefers_the_gateway_id():
    assert dedupe_key("kannel", "abc", "13800000000", "Y") == "kannel:abc"
    same = dedupe_key("json", None, "13800000000", "Y", "2026-11-24T15:00:00")
    assert same == dedupe_key("json", None, "13800000000", "Y", "2026-11-24T15:00:00")
    assert same != dedupe_key("json", None, "13800000000", "Y", "2026-11-24T15:00:01")
    assert len(dedupe_key("json", "x" * 500, "1", "Y")) == 120
