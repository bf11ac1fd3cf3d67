"""Content checks (R-43) as a pure function: blocks, warnings, links, advisory wording."""

from app.services.rules import RuleSpec, check, links_in

RULES = [
    RuleSpec(1, "内幕消息", False, "text", "illegal", "block", "内幕信息"),
    RuleSpec(2, r"(中信|华泰)证券", True, "text", "third_party_ad", "block", "其他券商"),
    RuleSpec(3, "", False, "links", "third_party_ad", "block", "外部链接"),
    RuleSpec(4, "保本|稳赚|收益率", True, "text", "advisory_wording", "warn", "咨询用语"),
    RuleSpec(5, "VIP", False, "text", "other", "warn", ""),
]
DOMAINS = ["hxzq.com.cn"]


def test_clean_text_passes():
    result = check("尊敬的客户,您的账户将于周六维护。", "notice", RULES, DOMAINS)
    assert result.ok and not result.blocks and not result.warnings


def test_a_block_names_the_rule_and_what_matched():
    result = check("独家内幕消息,速来!", "market", RULES, DOMAINS)
    assert not result.ok
    [m] = result.blocks
    assert (m.rule_id, m.label, m.found, m.kind) == (1, "内幕信息", "内幕消息", "illegal")


def test_regex_rules_and_case_insensitive_words():
    assert [m.rule_id for m in check("华泰证券的朋友", "notice", RULES, DOMAINS).blocks] == [2]
    [w] = check("尊享vip服务", "notice", RULES, DOMAINS).warnings
    assert w.label == "VIP" and w.found == "vip"  # a rule without a note is named by its pattern


def test_links_outside_the_company_domains_block():
    assert check("详见 https://www.hxzq.com.cn/notice", "notice", RULES, DOMAINS).ok
    assert check("详见m.hxzq.com.cn", "notice", RULES, DOMAINS).ok
    [m] = check("点击 t.cn/abc 领取", "notice", RULES, DOMAINS).blocks
    assert m.rule_id == 3 and m.found == "t.cn"
    assert not check("http://hxzq.com.cn@evil.example/x", "notice", RULES, DOMAINS).ok
    assert not check("访问 www.hxzq.com.cn.evil.com", "notice", RULES, DOMAINS).ok


def test_advisory_wording_warns_in_notices_but_not_in_advisory():
    [w] = check("本产品保本,收益率高", "notice", RULES, DOMAINS).warnings
    assert w.rule_id == 4 and w.found == "保本"
    assert check("本产品保本,收益率高", "advisory", RULES, DOMAINS).warnings == []


def test_links_in_recognises_link_shapes_only():
    assert links_in("Mr.Wang 上涨3.5%") == []
    assert [h for _w, h in links_in("见hxzq.com.cn。")] == ["hxzq.com.cn"]
