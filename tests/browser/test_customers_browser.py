"""In Chromium: a branch user searches customers as they type, hands some over to their
superior, and the superior assigns them to a colleague (R-31, issue 3 item 3 and 5)."""

from playwright.sync_api import expect
from sqlalchemy import select

from app.extensions import db
from app.models import Customer, Handover
from tests.browser.conftest import screenshot
from tests.factories import make_customer, make_user


def _rows(page) -> list[str]:
    return page.locator("#customer-rows tbody tr").all_inner_texts()


def test_search_then_two_step_handover(page, login, new_page, user):
    wangs = [make_customer(name=n, tags="基金") for n in ("王一鸣", "王二丫")]
    others = [make_customer(name=n) for n in ("李四", "赵六", "钱七")]
    make_customer(name="王上海", branch_code="SH01")  # another branch: never shown to bj_staff
    colleague = make_user(username="bj_new", display_name="新任客户经理", unit_code="BJ01")

    login("bj_staff")
    page.click("nav.mainnav >> text=客户")
    page.wait_for_url("**/customers/")
    assert len(_rows(page)) == 5  # the five BJ01 customers, not the Shanghai one
    page.evaluate("window.__sameDocument = true")
    page.locator("input[name=q]").press_sequentially("王", delay=80)
    expect(page.locator("#customer-rows tbody tr")).to_have_count(2)  # strict CSP: no eval
    rows = _rows(page)
    assert all("王" in r for r in rows) and not any("王上海" in r for r in rows)
    assert page.evaluate("window.__sameDocument") is True  # the rows were swapped, no reload
    assert "q=%E7%8E%8B" in page.url  # hx-push-url keeps the search in the address
    assert "****" in page.locator("#customer-rows").inner_text()  # masked mobiles
    screenshot(page, "customers-active-search")

    # "My customers": filter by the name, select all matching, hand over with confirmation.
    page.click("nav.mainnav >> text=我的客户")
    page.wait_for_url("**/customers/mine")
    page.locator("input[name=q]").press_sequentially("王", delay=80)
    expect(page.locator("#mine-rows tbody tr")).to_have_count(2)
    page.check("#mine-rows input[name=all]")
    screenshot(page, "customers-mine-selected")
    page.click("text=移交给我的上级…")
    page.wait_for_url("**/customers/mine/review")
    assert "将把 2 位客户移交给您的上级用户 北京营业部总经理" in page.locator("main").inner_text()
    screenshot(page, "customers-transfer-confirm")
    page.click("button:has-text('确认移交')")
    page.wait_for_url("**/customers/mine")
    assert "已将 2 位客户移交给 北京营业部总经理" in page.locator(".flash-success").inner_text()
    remaining = page.locator("#mine-rows tbody").inner_text()
    assert "王一鸣" not in remaining and "李四" in remaining

    db.session.expire_all()
    head = user("bj_head")
    for c in wangs:
        row = db.session.get(Customer, c.id)
        assert (row.manager_id, row.awaiting_assignment) == (head.id, True)
    for c in others:
        assert db.session.get(Customer, c.id).manager_id == user("bj_staff").id

    # The superior, in another browser session: "To assign" shows a badge and the customers.
    boss = new_page()
    login("bj_head", target=boss)
    badge = boss.locator("nav.mainnav a:has-text('待分配') .badge")
    assert badge.inner_text() == "2"
    boss.click("nav.mainnav >> text=待分配")
    boss.wait_for_url("**/customers/to-assign")
    listing = boss.locator("#assign-rows").inner_text()
    assert "王一鸣" in listing and "王二丫" in listing
    boss.check("#assign-rows input[name=all]")
    boss.select_option("select[name=to_user]", str(colleague.id))
    screenshot(boss, "customers-to-assign")
    boss.click("#assign-form button[type=submit]")
    boss.wait_for_url("**/customers/to-assign")
    assert "已将 2 位客户分配给 新任客户经理" in boss.locator(".flash-success").inner_text()
    assert boss.locator("nav.mainnav a:has-text('待分配') .badge").count() == 0
    screenshot(boss, "customers-assigned")

    db.session.expire_all()
    for c in wangs:
        row = db.session.get(Customer, c.id)
        assert (row.manager_id, row.awaiting_assignment) == (colleague.id, False)
    kinds = db.session.execute(select(Handover.kind).order_by(Handover.id)).scalars().all()
    assert kinds == ["transfer", "assign"]

    # The customer page tells the story in its history.
    boss.goto(f"/customers/{wangs[0].id}")
    history = boss.locator("#timeline").inner_text()
    assert "已移交" in history and "已分配" in history and "新任客户经理" in history
    screenshot(boss, "customers-detail-history")
    print("JSERR", page.js_errors)
    assert page.js_errors == []


def test_call_centre_opts_out_a_shared_number_in_two_clicks(page, login):
    a = make_customer(name="孙一", mobile="13512345678")
    b = make_customer(name="孙二", mobile="13512345678", branch_code="SH01", consent="undetermined")
    login("callcenter")
    page.click("nav.mainnav >> text=电话退订")
    page.fill("input[name=mobile]", "135 1234 5678")
    page.click("button:has-text('查找')")  # click 1
    results = page.locator("#cc-results")
    expect(results).to_contain_text("号码 135****5678 对应 2 位客户")
    assert "13512345678" not in results.inner_text()  # masked for the agent
    page.fill("#cc-results input[name=note]", "来电要求停发全部短信")
    screenshot(page, "callcentre-found")
    page.click("button:has-text('为该号码下全部 2 位客户办理退订')")  # click 2
    expect(page.locator("#cc-results .flash-success")).to_contain_text("已为 2 位客户办理退订")
    expect(page.locator("#cc-results .consent-refused")).to_have_count(2)
    screenshot(page, "callcentre-opted-out")
    db.session.expire_all()
    assert {db.session.get(Customer, c.id).consent for c in (a, b)} == {"refused"}
    assert page.js_errors == []


def test_staff_records_consent_on_the_customer_page(page, login):
    c = make_customer(name="周确认", consent="undetermined")
    login("bj_staff")
    page.goto(f"/customers/{c.id}")
    page.fill("#consent-panel textarea[name=evidence]", "客户签署《短信服务确认书》No.0012")
    page.click("button:has-text('标记为同意接收')")
    panel = page.locator("#consent-panel")
    expect(panel.locator(".consent-agreed")).to_have_count(1)
    expect(panel).to_contain_text("已记录接收意愿:同意接收")
    expect(page.locator("#timeline")).to_contain_text("No.0012")  # swapped out of band
    screenshot(page, "customer-consent-agreed")
    db.session.expire_all()
    assert db.session.get(Customer, c.id).consent == "agreed"
    assert page.js_errors == []
