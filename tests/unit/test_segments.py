"""SMS segment counting (R-44, R-49): GSM-7 and UCS-2, signature and opt-out line included."""

import pytest

from app.services import segments
from app.services.segments import count, measure


def test_gsm7_single_and_multipart_limits():
    assert count("a" * 160) == ("GSM-7", 160, 1, 160)
    assert count("a" * 161) == ("GSM-7", 161, 2, 153)
    assert count("a" * 306)[2] == 2
    assert count("a" * 307)[2] == 3


def test_gsm7_extension_characters_take_two_septets():
    assert count("€" * 80) == ("GSM-7", 160, 1, 160)
    assert count("€" * 80 + "a")[2] == 2
    # An escape pair is never split across parts: 152 plain + one "{" needs a new part.
    # 306 septets would fill two parts exactly, but the "{" cannot straddle them.
    assert count("a" * 152 + "{" + "a" * 152) == ("GSM-7", 306, 3, 153)
    assert count("a" * 151 + "{" + "a" * 153) == ("GSM-7", 306, 2, 153)


def test_any_chinese_character_switches_to_ucs2():
    assert count("a" * 69 + "中") == ("UCS-2", 70, 1, 70)
    assert count("中" * 71)[1:] == (71, 2, 67)
    assert count("中" * 134)[2] == 2
    assert count("中" * 135)[2] == 3


def test_characters_outside_the_bmp_take_two_units():
    assert count("😀" * 35) == ("UCS-2", 70, 1, 70)
    assert count("😀" * 36)[2] == 2


def test_signature_is_prefixed_and_counted():
    info = measure(
        "a" * 60,
        commercial=False,
        opt_out_line="回T退订",
        signature="【和兴证券】",
        longest_branch="",
    )
    assert info.text.startswith("【和兴证券】")
    assert info.encoding == "UCS-2"  # the signature is Chinese
    assert info.chars == 66 and info.segments == 1 and info.remaining == 4


def test_opt_out_line_only_for_commercial_categories():
    body = "中" * 60
    notice = measure(
        body, commercial=False, opt_out_line="回T退订", signature="【和兴证券】", longest_branch=""
    )
    market = measure(
        body, commercial=True, opt_out_line="回T退订", signature="【和兴证券】", longest_branch=""
    )
    assert not notice.text.endswith("回T退订") and notice.segments == 1
    assert market.text.endswith("回T退订") and market.chars == 70 and market.segments == 1
    longer = measure(
        body + "中",
        commercial=True,
        opt_out_line="回T退订",
        signature="【和兴证券】",
        longest_branch="",
    )
    assert longer.segments == 2


def test_placeholders_count_at_their_longest():
    info = measure(
        "{name}您好,{branch}提醒您",
        commercial=False,
        opt_out_line="",
        signature="【和兴证券】",
        longest_branch="北京朝阳门外大街营业部",
    )
    assert "{name}" not in info.text and "北京朝阳门外大街营业部" in info.text
    assert info.chars == 6 + segments.NAME_MAX_CHARS + 3 + 11 + 3
    assert info.unknown_placeholders == ()
    assert measure(
        "{foo}", commercial=False, opt_out_line="", signature="", longest_branch=""
    ).unknown_placeholders == ("foo",)


@pytest.mark.parametrize("n,expected", [(64, 1), (65, 2), (128, 2), (129, 3), (664, 10), (665, 11)])
def test_segment_boundaries_with_the_signature(n, expected):
    info = measure(
        "中" * n, commercial=False, opt_out_line="", signature="【和兴证券】", longest_branch=""
    )
    assert info.segments == expected
    assert info.over_limit == (expected > segments.MAX_SEGMENTS)


def test_gsm7_text_with_a_latin_signature():
    info = measure("Hello", commercial=False, opt_out_line="", signature="[HX]", longest_branch="")
    # "[" and "]" are extension characters: 4 + 2 + 5 = 11 septets.
    assert info.encoding == "GSM-7" and info.units == 11 and info.remaining == 149
