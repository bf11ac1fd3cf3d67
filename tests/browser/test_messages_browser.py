"""Drafting with live counters, submission, and approval in place from the inbox (issue 4)."""

import re

from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.factories import make_customer


def _customers():
    for _ in range(3):
        make_customer()
    make_customer(consent="refused")


def _submit_draft(page, *, category: str, body_steps: list[str], title: str) -> int:
    """Fill the drafting form step by step and submit it; returns the new message's id."""
    page.goto("/messages/new")
    page.fill("input[name=title]", title)
    page.select_option("#draft-category", category)
    for text in body_steps:
        page.fill("#draft-body", text)
    page.click("button[name=action][value=submit]")
    page.wait_for_url(re.compile(r"/messages/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def test_staff_drafts_market_message_and_head_approves_in_the_inbox(page, login, new_page):
    _customers()
    login("bj_staff")
    page.goto("/messages/new")
    expect(page.locator("h1")).to_have_text("撰写短信")
    page.fill("input[name=title]", "本周市场回顾")
    page.select_option("#draft-category", "market")
    # The author's own branch is chosen already, and the preview counts its customers.
    expect(page.locator("#preview-eligible")).to_have_text("3")
    page.locator("#draft-body").press_sequentially("本周市场", delay=30)
    # 【和兴证券】(6) + 4 characters + 回T退订 (4)
    expect(page.locator("#count-chars")).to_have_text("14")
    expect(page.locator("#count-segments")).to_have_text("1")
    screenshot(page, "messages-draft-one-segment")
    page.fill("#draft-body", "本周市场回顾:" + "沪深两市成交活跃," * 8)
    expect(page.locator("#count-segments")).to_have_text("2")
    expect(page.locator("#count-recipients")).to_have_text("3")
    expect(page.locator("#sms-text")).to_contain_text("回T退订")
    screenshot(page, "messages-draft-two-segments")
    page.click("button[name=action][value=submit]")
    page.wait_for_url(re.compile(r"/messages/\d+$"))
    message_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#message-status")).to_have_text("待审批")
    expect(page.locator("#route-article")).to_have_text("Art 9")
    screenshot(page, "messages-submitted")

    head = new_page()
    login("bj_head", target=head)
    expect(head.locator("#badge-inbox-list_pending")).to_have_text("1")
    head.click("nav.mainnav >> text=待我审批")
    item = head.locator(f"#inbox-item-{message_id}")
    expect(item).to_contain_text("本周市场回顾")
    expect(item).to_contain_text("Art 9")
    screenshot(head, "inbox-before-approval")
    head.evaluate("window.__noReload = true")
    item.locator("textarea[name=comment]").fill("同意发送")
    item.locator("button", has_text="批准").click()
    expect(head.locator(f"#inbox-item-{message_id} .decision-done")).to_have_text(
        "您已批准这条短信。"
    )
    assert head.evaluate("window.__noReload") is True  # decided in place, no page load
    expect(head.locator("#badge-inbox-list_pending")).to_have_count(0)
    screenshot(head, "inbox-after-approval")

    page.reload()
    expect(page.locator("#message-status")).to_have_text("已批准")
    expect(page.locator("#approval-history")).to_contain_text("同意发送")
    screenshot(page, "messages-approved")
    assert page.js_errors == []


def test_branch_advisory_lands_in_research_inbox_not_the_branch_head(page, login, new_page):
    _customers()
    login("bj_staff")
    message_id = _submit_draft(
        page,
        category="advisory",
        title="策略观点",
        body_steps=["本周策略:关注消费板块,注意控制仓位。"],
    )
    expect(page.locator("#route-article")).to_have_text("Art 9")
    expect(page.locator("#route")).to_contain_text("研究发展部审核人")

    research = new_page()
    login("research_head", target=research)
    research.goto("/inbox/")
    expect(research.locator(f"#inbox-item-{message_id}")).to_contain_text("策略观点")
    screenshot(research, "inbox-research-advisory")

    head = new_page()
    login("bj_head", target=head)
    head.goto("/inbox/")
    expect(head.locator(f"#inbox-item-{message_id}")).to_have_count(0)
    expect(head.locator("#inbox-empty")).to_be_visible()
    assert page.js_errors == []
