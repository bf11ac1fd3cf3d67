"""Browser: the Market admin sets a user's work mobile on the user page; a head of an API
client's unit cancels the client's scheduled message from its page."""

from __future__ import annotations

from datetime import timedelta

from tests.browser.conftest import screenshot


def test_admin_sets_a_work_mobile_on_the_user_page(app, page, login, user):
    staff = user("bj_staff")
    login("admin")
    page.goto(f"/admin/users/{staff.id}")
    field = page.locator("input[name=mobile]")
    field.fill("138 1111 2222")
    field.press("Enter")
    page.wait_for_selector(".flash-success")
    assert page.locator("input[name=mobile]").input_value() == "13811112222"
    screenshot(page, "admin-user-work-mobile")
    page.locator("input[name=mobile]").fill("12345")
    page.locator("input[name=mobile]").press("Enter")
    page.wait_for_selector(".flash-error")
    assert "11" in page.inner_text(".flash-error")
    assert page.locator("input[name=mobile]").input_value() == "13811112222"
    assert page.js_errors == []


def test_head_cancels_an_api_message(app, page, login):
    from app.extensions import db
    from app.models import Message
    from app.services import api_messages
    from app.timeutil import to_local, utcnow
    from tests.factories import make_api_client, make_customer, make_template

    template = make_template()
    api_client, _key = make_api_client(templates=[template])
    customer = make_customer()
    when = to_local(utcnow() + timedelta(days=2)).replace(hour=10, minute=0, microsecond=0)
    body = {
        "template_id": template.id,
        "recipients": [{"crm_id": customer.crm_id, "vars": {"account": "A1", "amount": "1.00"}}],
        "schedule_at": when.isoformat(),
    }
    answer = api_messages.accept(api_client, body)
    db.session.commit()
    message = db.session.get(Message, answer.body["id"])

    login("bj_head")
    page.goto(f"/messages/{message.id}")
    page.on("dialog", lambda dialog: dialog.accept())
    screenshot(page, "messages-api-message-cancel")
    page.locator("button.danger").click()
    page.wait_for_selector(".flash-success")
    db.session.expire_all()
    assert db.session.get(Message, message.id).status == "cancelled"
    assert page.js_errors == []
