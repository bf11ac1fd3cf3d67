"""Send progress, recipients, CSV export, the reply inbox and the carrier simulator pages:
htmx fragments, data scope, masking and permissions (R-03, R-34, R-51, R-53)."""

import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditLog, ConsentEvent, Customer, InboundReply, Message, Recipient, ReplyNote
from app.services import replies, sending
from app.services.demo import DEMO_USERS
from tests.factories import make_approved_message, make_customer, make_recipient, unit


@pytest.fixture
def sent_message(app, run_jobs):
    """A BJ01 notice sent through the simulator: 3 delivered, 1 refused, 1 with "=" name."""
    for i in range(3):
        make_customer(mobile=f"1391234001{i}")
    make_customer(consent="refused", mobile="13912340009")
    make_customer(name='=HYPERLINK("http://x")', mobile="13912340008", consent="undetermined")
    message = make_approved_message()
    sending.dispatch_due()
    assert run_jobs() == 0
    db.session.expire_all()
    return db.session.get(Message, message.id)


def test_progress_partial_stops_polling_when_done(login_as, sent_message):
    client = login_as("bj_staff")
    response = client.get(f"/messages/{sent_message.id}/progress", htmx=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert 'id="send-progress"' in html and "<progress" in html and "100%" in html
    assert "every 2s" not in html  # finished: no more polling
    assert re.search(r"已送达</span> <strong>3</strong>", html)
    assert re.search(r"已排除</span> <strong>2</strong>", html)


def test_progress_polls_while_sending(login_as, app):
    make_customer()
    message = make_approved_message()
    sending.start_message(message.id)
    client = login_as("bj_staff")
    html = client.get(f"/messages/{message.id}/progress", htmx=True).get_data(as_text=True)
    assert 'hx-trigger="every 2s"' in html and "准备收件人" in html


def test_message_page_includes_the_progress_shell(login_as, sent_message):
    html = login_as("bj_staff").get(f"/messages/{sent_message.id}").get_data(as_text=True)
    assert f'hx-get="/messages/{sent_message.id}/progress"' in html and 'hx-trigger="load"' in html


def test_drafts_show_no_progress_box(login_as, app):
    message = make_approved_message(status="draft")
    html = (
        login_as("bj_staff")
        .get(f"/messages/{message.id}/progress", htmx=True)
        .get_data(as_text=True)
    )
    assert "hidden" in html and "<progress" not in html


@pytest.mark.parametrize("path", ["progress", "recipients", "recipients.csv"])
def test_other_branches_do_not_see_the_send(login_as, sent_message, path):
    assert login_as("sh_staff").get(f"/messages/{sent_message.id}/{path}").status_code == 404


def test_recipients_filter_and_masking(login_as, sent_message):
    client = login_as("bj_staff")
    html = client.get(f"/messages/{sent_message.id}/recipients?status=suppressed").get_data(
        as_text=True
    )
    assert html.count('class="tag send-suppressed"') == 2 and "send-delivered" not in html
    assert "139****0009" in html and "13912340009" not in html  # bj_staff sees masked numbers
    assert "拒绝接收" in html and "订阅状态未确定" in html  # the reasons, in words
    fragment = client.get(f"/messages/{sent_message.id}/recipients", htmx=True).get_data(
        as_text=True
    )
    assert "<html" not in fragment and fragment.count("<tr>") == 6  # header + 5 rows
    admin = login_as("admin").get(f"/messages/{sent_message.id}/recipients").get_data(as_text=True)
    assert "13912340009" in admin


def test_recipients_page_keyset_paging(app, login_as, sent_message):
    app.config["PAGE_SIZE"] = 2
    client = login_as("bj_staff")
    html = client.get(f"/messages/{sent_message.id}/recipients").get_data(as_text=True)
    m = re.search(r'href="([^"]*after=(\d+)[^"]*)"', html)
    assert m
    second = client.get(m.group(1).replace("&amp;", "&")).get_data(as_text=True)
    ids_first = re.findall(r"<tr>\s*<td>(\d+)</td>", html)
    ids_second = re.findall(r"<tr>\s*<td>(\d+)</td>", second)
    assert len(ids_first) == 2 and len(ids_second) == 2 and not set(ids_first) & set(ids_second)


def test_csv_export_is_masked_safe_and_audited(login_as, sent_message, user):
    client = login_as("bj_staff")
    response = client.get(f"/messages/{sent_message.id}/recipients.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    lines = text.strip().splitlines()
    assert len(lines) == 6
    assert "139****0010" in text and "13912340010" not in text
    assert "'=HYPERLINK" in text  # never a live formula in Excel
    entry = db.session.execute(
        select(AuditLog).where(AuditLog.action == "message.recipients_exported")
    ).scalar_one()
    assert entry.actor_id == user("bj_staff").id


def test_retry_unknown_needs_the_operator_permission(login_as, sent_message, user):
    r = (
        db.session.execute(
            select(Recipient).where(
                Recipient.message_id == sent_message.id, Recipient.status == "delivered"
            )
        )
        .scalars()
        .first()
    )
    r.status = "unknown"
    db.session.commit()
    assert login_as("bj_head").post(f"/messages/{sent_message.id}/retry-unknown").status_code == 403
    client = login_as("admin")
    html = client.get(f"/messages/{sent_message.id}/progress", htmx=True).get_data(as_text=True)
    assert "retry-unknown" in html
    response = client.post(f"/messages/{sent_message.id}/retry-unknown", htmx=True)
    assert response.status_code == 200 and 'id="send-progress"' in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Recipient, r.id).status == "queued"
    assert db.session.get(Message, sent_message.id).status == "sending"


# ------------------------------------------------------------------ the reply inbox


def _reply(mobile, text, external_id):
    reply, _ = replies.receive(gateway="json", mobile=mobile, text=text, external_id=external_id)
    db.session.commit()
    return reply


def test_inbox_shows_the_branchs_own_replies(login_as, app):
    bj = make_customer(mobile="13700001111")
    make_customer(mobile="13700002222", branch_code="SH01")
    mine = _reply(bj.mobile, "请问明天开门吗", "a")
    theirs = _reply("13700002222", "你好", "b")
    unknown = _reply("13700009999", "谁啊", "c")
    client = login_as("bj_staff")
    html = client.get("/replies").get_data(as_text=True)
    assert f"/replies/{mine.id}" in html and f'/replies/{theirs.id}"' not in html
    assert client.get(f"/replies/{theirs.id}").status_code == 404
    assert client.get(f"/replies/{unknown.id}").status_code == 404
    nav = client.get("/dashboard").get_data(as_text=True)
    assert re.search(r'id="badge-replies-inbox">1<', nav)
    admin = login_as("admin").get("/replies").get_data(as_text=True)
    assert f"/replies/{unknown.id}" in admin and f"/replies/{theirs.id}" in admin


def test_agreement_from_a_shared_number_is_recorded_for_the_chosen_customer(login_as, app):
    a = make_customer(mobile="13700003333", consent="undetermined")
    b = make_customer(mobile="13700003333", consent="undetermined")
    reply = _reply(a.mobile, "Y", "y1")
    assert reply.status == "open"
    client = login_as("bj_staff")
    page = client.get(f"/replies/{reply.id}").get_data(as_text=True)
    assert a.name in page and b.name in page
    response = client.post(f"/replies/{reply.id}/consent", {"state": "agreed", "customer_id": b.id})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Customer, b.id).consent == "agreed"
    assert db.session.get(Customer, a.id).consent == "undetermined"
    event = db.session.execute(
        select(ConsentEvent).where(ConsentEvent.customer_id == b.id)
    ).scalar_one()
    assert (
        event.channel == "sms_reply" and f"#{reply.id}" in event.evidence and "Y" in event.evidence
    )
    handled = db.session.get(InboundReply, reply.id)
    assert handled.status == "handled" and handled.handled_by_id is not None
    # Handled once: a second decision is refused and changes nothing.
    client.post(f"/replies/{reply.id}/consent", {"state": "refused"})
    db.session.expire_all()
    assert db.session.get(Customer, a.id).consent == "undetermined"


def test_free_text_refusal_applies_to_the_number(login_as, app):
    a = make_customer(mobile="13700004444")
    b = make_customer(mobile="13700004444")
    reply = _reply(a.mobile, "以后别发了", "r1")
    login_as("bj_staff").post(f"/replies/{reply.id}/consent", {"state": "refused"})
    db.session.expire_all()
    assert {db.session.get(Customer, c.id).consent for c in (a, b)} == {"refused"}


def test_notes_and_mark_handled(login_as, app):
    c = make_customer(mobile="13700005555")
    reply = _reply(c.mobile, "客户经理电话多少", "n1")
    client = login_as("bj_head")
    client.post(f"/replies/{reply.id}/notes", {"text": "已电话联系客户"})
    client.post(f"/replies/{reply.id}/notes", {"text": "   "})  # refused: empty
    notes = db.session.execute(select(ReplyNote)).scalars().all()
    assert [n.text for n in notes] == ["已电话联系客户"]
    client.post(f"/replies/{reply.id}/handled")
    db.session.expire_all()
    assert db.session.get(InboundReply, reply.id).status == "handled"
    html = client.get(f"/replies/{reply.id}").get_data(as_text=True)
    assert "已电话联系客户" in html and "已处理" in html


def test_reply_text_is_escaped(login_as, app):
    c = make_customer(mobile="13700006666")
    reply = _reply(c.mobile, "<script>alert(1)</script>", "x1")
    html = login_as("bj_staff").get(f"/replies/{reply.id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


# ------------------------------------------------------------------ carrier simulator


def test_simulator_phone_and_reply_as_the_customer(login_as, sent_message):
    client = login_as("admin")
    listing = client.get("/simulator").get_data(as_text=True)
    assert "13912340010" in listing
    phone = client.get("/simulator/13912340010").get_data(as_text=True)
    assert "【和兴证券】测试通知" in phone
    response = client.post("/simulator/13912340010/reply", {"text": "退订"})
    assert response.status_code == 302
    customer = db.session.execute(
        select(Customer).where(Customer.mobile == "13912340010")
    ).scalar_one()
    db.session.refresh(customer)
    assert customer.consent == "refused"
    reply = db.session.execute(select(InboundReply)).scalar_one()
    assert reply.gateway == "simulator" and reply.message_id == sent_message.id
    assert "退订" in client.get("/simulator/13912340010").get_data(as_text=True)


def test_simulator_refuses_replies_when_a_real_gateway_is_configured(app, login_as):
    app.config["SMS_GATEWAY"] = "kannel"
    make_customer(mobile="13912349999")
    client = login_as("admin")
    client.post("/simulator/13912349999/reply", {"text": "N"})
    assert db.session.execute(select(InboundReply)).first() is None
    assert "真实网关" in client.get("/simulator").get_data(as_text=True)


# ------------------------------------------------------------------ permissions

ROUTES = [
    ("GET", "/messages/{m}/progress"),
    ("GET", "/messages/{m}/recipients"),
    ("GET", "/messages/{m}/recipients.csv"),
    ("POST", "/messages/{m}/retry-unknown"),
    ("GET", "/replies"),
    ("GET", "/replies/{r}"),
    ("POST", "/replies/{r}/handled"),
    ("POST", "/replies/{r}/consent"),
    ("POST", "/replies/{r}/notes"),
    ("GET", "/simulator"),
    ("GET", "/simulator/13900000000"),
    ("POST", "/simulator/13900000000/reply"),
]


@pytest.mark.parametrize("username", [u[0] for u in DEMO_USERS])
def test_each_route_checks_its_permission(app, client, login_as, user, username):
    message_id = make_approved_message(unit_code="MKT", status="sent").id
    make_recipient(db.session.get(Message, message_id))
    reply_id = _reply("13900000000", "hello", "perm").id
    login_as(username)
    holder = user(username)
    for method, pattern in ROUTES:
        path = pattern.format(m=message_id, r=reply_id)
        endpoint = app.url_map.bind("").match(path, method=method)[0]
        allowed = holder.can(*app.view_functions[endpoint].required_permissions)
        response = (
            client.get(path) if method == "GET" else client.post(path, {"state": "x", "text": ""})
        )
        if allowed:
            assert response.status_code != 403 and response.status_code < 500, (username, path)
        else:
            assert response.status_code == 403, (username, path, response.status_code)


def test_anonymous_users_are_sent_to_login(client, app):
    message = make_approved_message(status="sent")
    for path in (f"/messages/{message.id}/progress", "/replies", "/simulator"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert unit("BJ01") is not None
