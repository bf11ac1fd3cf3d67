"""Carrier webhooks: authentication, idempotency and the bad-input list of issue 5."""

import hashlib
import hmac
import json
import logging
from urllib.parse import quote_from_bytes, urlencode

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import ConsentEvent, Customer, DeliveryReport, InboundReply, Recipient
from tests.factories import make_approved_message, make_customer, make_recipient

TOKEN = "kannel-secret-token"
SECRET = "json-webhook-secret"


@pytest.fixture
def hooks(app):
    app.config["KANNEL_WEBHOOK_TOKEN"] = TOKEN
    app.config["WEBHOOK_SECRET"] = SECRET
    return app.test_client()


def _count(model) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def _dlr(hooks, token=TOKEN, **params):
    query = {"token": token, **params} if token is not None else params
    return hooks.get("/webhooks/kannel/dlr?" + urlencode(query))


def _signed(hooks, path, body: bytes, secret=SECRET, **headers):
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hooks.post(
        path,
        data=body,
        headers={"X-Signature": signature, "Content-Type": "application/json", **headers},
    )


@pytest.fixture
def recipient(app):
    message = make_approved_message(status="sending")
    return make_recipient(message, make_customer(mobile="13911112222"))


# ------------------------------------------------------------------ authentication


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x"])
def test_kannel_dlr_with_a_bad_token_is_401_and_stores_nothing(hooks, recipient, token):
    response = _dlr(hooks, token=token, rid=recipient.id, status=1)
    assert response.status_code == 401
    assert _count(DeliveryReport) == 0
    db.session.expire_all()
    assert db.session.get(Recipient, recipient.id).status == "submitted"


def test_kannel_webhooks_are_off_without_a_configured_token(app, hooks, recipient):
    app.config["KANNEL_WEBHOOK_TOKEN"] = ""
    assert _dlr(hooks, token="", rid=recipient.id, status=1).status_code == 401
    assert hooks.get("/webhooks/kannel/mo?token=&from=13911112222&text=N").status_code == 401
    assert _count(InboundReply) == 0


def test_kannel_mo_with_a_bad_token_changes_no_consent(hooks, recipient):
    response = hooks.get(
        "/webhooks/kannel/mo?"
        + urlencode({"token": "nope", "from": "8613911112222", "text": "N", "id": "x1"})
    )
    assert response.status_code == 401
    assert _count(InboundReply) == 0 and _count(ConsentEvent) == 0


@pytest.mark.parametrize("path", ["/webhooks/sms/status", "/webhooks/sms/inbound"])
def test_json_webhooks_refuse_a_bad_or_missing_signature(hooks, recipient, path):
    body = json.dumps(
        {"recipient_id": recipient.id, "status": "delivered", "from": "13911112222", "text": "N"}
    ).encode()
    assert _signed(hooks, path, body, secret="other").status_code == 401
    assert (
        hooks.post(path, data=body, headers={"Content-Type": "application/json"}).status_code == 401
    )
    assert _count(DeliveryReport) == 0 and _count(InboundReply) == 0 and _count(ConsentEvent) == 0


def test_webhooks_need_no_login_and_no_csrf_token(hooks, recipient):
    assert _dlr(hooks, rid=recipient.id, status=8).status_code == 200
    body = json.dumps({"recipient_id": recipient.id, "status": "delivered"}).encode()
    assert _signed(hooks, "/webhooks/sms/status", body).status_code == 200


# ------------------------------------------------------------------ delivery reports


def test_kannel_dlr_delivered_is_applied_once(hooks, recipient):
    for _ in range(3):
        response = _dlr(hooks, rid=recipient.id, status=1, answer="")
        assert response.status_code == 200
    db.session.expire_all()
    assert db.session.get(Recipient, recipient.id).status == "delivered"
    assert _count(DeliveryReport) == 1


def test_kannel_failed_report_keeps_the_smsc_answer(hooks, recipient):
    assert (
        _dlr(hooks, rid=recipient.id, status=16, answer="NACK/FAIL unknown subscriber").status_code
        == 200
    )
    db.session.expire_all()
    row = db.session.get(Recipient, recipient.id)
    assert row.status == "failed" and row.reason == "NACK/FAIL unknown subscriber"
    # A later "delivered" does not flip a final outcome; it is kept as evidence.
    _dlr(hooks, rid=recipient.id, status=1)
    db.session.expire_all()
    assert db.session.get(Recipient, recipient.id).status == "failed"
    assert _count(DeliveryReport) == 2


def test_report_before_the_submission_was_recorded(hooks, app):
    message = make_approved_message(status="sending")
    queued = make_recipient(message, status="queued", attempts=0, submitted_at=None)
    assert _dlr(hooks, rid=queued.id, status=8, answer="ACK/").status_code == 200
    db.session.expire_all()
    row = db.session.get(Recipient, queued.id)
    assert row.status == "submitted" and row.submitted_at is not None
    assert _dlr(hooks, rid=queued.id, status=1).status_code == 200
    db.session.expire_all()
    assert db.session.get(Recipient, queued.id).status == "delivered"


def test_report_settles_an_unknown_outcome(hooks, app):
    message = make_approved_message(status="sent")
    lost = make_recipient(message, status="unknown", reason="outcome lost")
    _dlr(hooks, rid=lost.id, status=1)
    db.session.expire_all()
    assert db.session.get(Recipient, lost.id).status == "delivered"


def test_unknown_recipient_is_logged_and_answered_200(hooks, recipient, caplog):
    with caplog.at_level(logging.WARNING):
        assert _dlr(hooks, rid=987654321, status=1).status_code == 200
        assert _dlr(hooks, rid="not-a-number", status=2, answer="x").status_code == 200
    assert "unknown recipient" in caplog.text
    rows = db.session.execute(select(DeliveryReport)).scalars().all()
    assert len(rows) == 2 and all(r.recipient_id is None for r in rows)
    db.session.expire_all()
    assert db.session.get(Recipient, recipient.id).status == "submitted"


def test_malformed_dlr_is_400(hooks, recipient):
    assert _dlr(hooks, rid=recipient.id, status="abc").status_code == 400
    assert _dlr(hooks, rid=recipient.id).status_code == 400
    assert _count(DeliveryReport) == 0


def test_json_status_report_and_its_repeat(hooks, recipient):
    body = json.dumps(
        [{"id": "evt-1", "recipient_id": recipient.id, "status": "failed", "error": "UNDELIV"}]
    ).encode()
    for _ in range(2):
        response = _signed(hooks, "/webhooks/sms/status", body)
        assert response.status_code == 200
    db.session.expire_all()
    row = db.session.get(Recipient, recipient.id)
    assert row.status == "failed" and row.reason == "UNDELIV"
    assert _count(DeliveryReport) == 1


@pytest.mark.parametrize("body", [b"{not json", b"", b"[]", b'"text"', b'{"status": "exploded"}'])
def test_malformed_json_is_400_and_stores_nothing(hooks, recipient, body):
    assert _signed(hooks, "/webhooks/sms/status", body).status_code == 400
    assert _count(DeliveryReport) == 0


# ------------------------------------------------------------------ replies


def _mo(hooks, **params):
    return hooks.get("/webhooks/kannel/mo?" + urlencode({"token": TOKEN, **params}))


def test_kannel_reply_n_refuses_every_customer_with_the_number(hooks, app):
    a = make_customer(mobile="13922223333")
    b = make_customer(mobile="13922223333", branch_code="SH01")
    other = make_customer(mobile="13922224444")
    for _ in range(2):  # Kannel retries with the same id: applied once
        response = _mo(
            hooks,
            **{
                "from": "8613922223333",
                "to": "10690001",
                "text": " ｎ ",
                "id": "mo-1",
                "ts": "1795531181",
            },
        )
        assert response.status_code == 200
    db.session.expire_all()
    assert [db.session.get(Customer, c.id).consent for c in (a, b, other)] == [
        "refused",
        "refused",
        "agreed",
    ]
    assert _count(InboundReply) == 1
    assert _count(ConsentEvent) == 2
    reply = db.session.execute(select(InboundReply)).scalar_one()
    assert (reply.intent, reply.status, reply.mobile) == ("refuse", "auto", "13922223333")


def test_gb18030_text_from_a_misconfigured_gateway(hooks, app):
    c = make_customer(mobile="13933334444")
    raw = "不需要".encode("gb18030")
    query = urlencode({"token": TOKEN, "from": "13933334444", "id": "mo-gb", "charset": "UTF-8"})
    response = hooks.get(f"/webhooks/kannel/mo?{query}&text={quote_from_bytes(raw)}")
    assert response.status_code == 200
    reply = db.session.execute(select(InboundReply)).scalar_one()
    assert reply.text == "不需要" and reply.intent == "refuse"
    db.session.expire_all()
    assert db.session.get(Customer, c.id).consent == "refused"


def test_json_body_in_gb18030(hooks, app):
    make_customer(mobile="13933335555", consent="undetermined")
    body = json.dumps(
        {"id": "in-gb", "from": "13933335555", "text": "同意"}, ensure_ascii=False
    ).encode("gb18030")
    assert _signed(hooks, "/webhooks/sms/inbound", body).status_code == 200
    reply = db.session.execute(select(InboundReply)).scalar_one()
    assert reply.text == "同意" and reply.status == "auto"


def test_a_reply_of_ten_thousand_characters_goes_to_the_inbox_whole(hooks, app):
    make_customer(mobile="13944445555")
    text = ("请不要再给我发短信了" * 1000)[:10_000]
    body = json.dumps(
        {"id": "long-1", "from": "13944445555", "text": text}, ensure_ascii=False
    ).encode()
    assert _signed(hooks, "/webhooks/sms/inbound", body).status_code == 200
    reply = db.session.execute(select(InboundReply)).scalar_one()
    assert len(reply.text) == 10_000 and reply.status == "open" and reply.intent == "other"


def test_agreement_from_a_shared_number_waits_in_the_inbox(hooks, app):
    a = make_customer(mobile="13955556666", consent="undetermined")
    b = make_customer(mobile="13955556666", consent="undetermined")
    body = json.dumps({"id": "y-1", "from": "+86 139 5555 6666", "text": "Y"}).encode()
    assert _signed(hooks, "/webhooks/sms/inbound", body).status_code == 200
    reply = db.session.execute(select(InboundReply)).scalar_one()
    assert (reply.status, reply.customers_matched, reply.intent) == ("open", 2, "agree")
    db.session.expire_all()
    assert {db.session.get(Customer, c.id).consent for c in (a, b)} == {"undetermined"}


def test_reply_from_an_unknown_number_lands_in_the_market_inbox(hooks, app):
    assert _mo(hooks, **{"from": "13800000000", "text": "TD", "id": "u-1"}).status_code == 200
    reply = db.session.execute(select(InboundReply)).scalar_one()
    assert reply.unit_id is None and reply.status == "open" and reply.intent == "refuse"


def test_reply_without_a_sender_is_400(hooks, app):
    assert _mo(hooks, text="Y", id="n-1").status_code == 400
    body = json.dumps({"id": "n-2", "text": "Y"}).encode()
    assert _signed(hooks, "/webhooks/sms/inbound", body).status_code == 400
    assert _count(InboundReply) == 0


def test_kannel_post_url_variant_with_a_charset(hooks, app):
    """Kannel's post-url sends the text as the body and the sender in X-Kannel-From."""
    c = make_customer(mobile="13966667777")
    response = hooks.post(
        f"/webhooks/kannel/mo?token={TOKEN}&id=post-1",
        data="退订".encode("gb18030"),
        headers={
            "Content-Type": "text/plain; charset=GB18030",
            "X-Kannel-From": "8613966667777",
            "X-Kannel-To": "10690001",
        },
    )
    assert response.status_code == 200
    reply = db.session.execute(select(InboundReply)).scalar_one()
    assert (reply.text, reply.to_number, reply.status) == ("退订", "10690001", "auto")
    db.session.expire_all()
    assert db.session.get(Customer, c.id).consent == "refused"


def test_oversized_json_body_is_413(hooks, app):
    body = json.dumps({"id": "big", "from": "13900000000", "text": "x" * 300_000}).encode()
    assert _signed(hooks, "/webhooks/sms/inbound", body).status_code == 413
    assert _count(InboundReply) == 0
