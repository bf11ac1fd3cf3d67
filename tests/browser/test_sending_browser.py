"""The carrier simulator reply flow (issue 5): a trainer sees what a customer's phone got,
replies as the customer, and the reply takes effect; free text lands in the branch's
reply inbox, where the branch handles it. Also the live send box on the message page."""

import re

from playwright.sync_api import expect
from sqlalchemy import select

from app.extensions import db
from app.models import Customer, InboundReply
from app.services import sending
from tests.browser.conftest import screenshot
from tests.factories import make_approved_message, make_customer


def test_trainer_replies_as_the_customer_on_the_simulator(page, login, new_page, run_jobs):
    quitter = make_customer(mobile="13966660001")
    asker = make_customer(mobile="13966660002")
    make_customer(mobile="13966660003")
    message = make_approved_message(body="您好，本周六营业部举办投资者教育讲座，欢迎参加。")
    sending.dispatch_due()
    assert run_jobs() == 0
    message_id = message.id

    login("admin")
    page.goto(f"/messages/{message_id}")
    box = page.locator("#send-progress")
    expect(box.locator("h2")).to_contain_text("发送进度")
    expect(box.locator(".send-delivered strong")).to_have_text("3")
    expect(box.locator("progress")).to_have_attribute("value", "3")
    screenshot(page, "sending-message-progress")

    page.click("nav.mainnav >> text=运营商模拟器")
    expect(page.locator("h1")).to_have_text("运营商模拟器")
    page.click(f"a[href='/simulator/{quitter.mobile}']")
    expect(page.locator(".sms-in .sms-text")).to_have_text(
        "【和兴证券】您好，本周六营业部举办投资者教育讲座，欢迎参加。"
    )
    page.fill("textarea[name=text]", "Ｎ")  # full-width, as a phone may send it
    page.click("button:has-text('发送回复')")
    expect(page.locator(".flash-success")).to_contain_text("回复已收到")
    expect(page.locator(".sms-out .sms-text")).to_have_text("Ｎ")
    screenshot(page, "sending-simulator-phone")
    db.session.expire_all()
    assert db.session.get(Customer, quitter.id).consent == "refused"

    page.goto(f"/simulator/{asker.mobile}")
    page.fill("textarea[name=text]", "请问讲座在几楼？")
    page.click("button:has-text('发送回复')")
    expect(page.locator(".flash-success")).to_contain_text("回复已收到")
    reply = db.session.execute(
        select(InboundReply).where(InboundReply.mobile == asker.mobile)
    ).scalar_one()
    assert reply.status == "open"

    # The branch sees it in its reply inbox, with the count in the navigation.
    staff = new_page()
    login("bj_staff", target=staff)
    expect(staff.locator("#badge-replies-inbox")).to_have_text("1")
    staff.click("nav.mainnav >> text=回复收件箱")
    staff.click("text=请问讲座在几楼？")
    expect(staff.locator(".reply-text")).to_have_text("请问讲座在几楼？")
    staff.fill("textarea[name=text]", "已致电客户告知在三楼")
    staff.click("button:has-text('添加备注')")
    expect(staff.locator(".flash-success")).to_contain_text("备注已添加")
    staff.click("button:has-text('标记为已处理')")
    expect(staff.locator("h1 .tag")).to_have_text("已处理")
    screenshot(staff, "sending-reply-handled")
    expect(staff.locator("#badge-replies-inbox")).to_have_count(0)
    assert page.js_errors == []
    assert re.search(r"/replies/\d+$", staff.url)
