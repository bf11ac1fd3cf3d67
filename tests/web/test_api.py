"""The REST API through the test client (R-15): authentication, binding, variables, limits,
idempotency, rate limit, reading back, JSON errors, no session."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    ApiMessage,
    ApiRecipient,
    AuditLog,
    IdempotencyKey,
    Message,
)
from app.services import api_clients
from tests.factories import make_api_client, make_customer, make_template

URL = "/api/v1/messages"


def auth(key: str, **extra) -> dict:
    return {"Authorization": f"Bearer {key}", **extra}


def post(client, key, body, **headers):
    client._fresh_globals()  # each call a request of its own, as for a real client
    response = client.c.post(URL, json=body, headers=auth(key, **headers))
    client._fresh_globals()
    return response


def count(model) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


@pytest.fixture
def setup(app):
    template = make_template()
    api_client, key = make_api_client(templates=[template])
    customers = [make_customer() for _ in range(3)]
    return api_client, key, template, customers


def body_for(template, customers, **extra):
    recipients = [
        {"crm_id": c.crm_id, "vars": {"account": f"A{c.id}", "amount": "1,000.00"}}
        for c in customers
    ]
    return {"template_id": template.id, "recipients": recipients, **extra}


# ---------------------------------------------------------------- authentication


def test_no_key_wrong_key_and_revoked_key_are_401(client, setup, user):
    api_client, key, template, customers = setup
    body = body_for(template, customers)
    for headers in (
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
        auth(key[:-1] + ("A" if key[-1] != "A" else "B")),
        auth("hxk_00000000_" + "x" * 43),
        auth("totally-wrong"),
    ):
        response = client.c.post(URL, json=body, headers=headers)
        assert response.status_code == 401, headers
        assert response.is_json and response.json["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    api_clients.revoke(api_client.id, user("admin"), "系统下线")
    db.session.commit()
    response = post(client, key, body)
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert client.c.get("/api/v1/messages/1", headers=auth(key)).status_code == 401
    assert count(Message) == 0


def test_a_template_not_bound_to_the_key_is_403(client, setup):
    api_client, key, template, customers = setup
    other = make_template(name="未绑定")
    for template_id in (other.id, 999_999):
        response = post(client, key, body_for(other, customers) | {"template_id": template_id})
        assert response.status_code == 403
        assert response.json["error"] == "forbidden"
        assert str(template_id) in response.json["message"]
    assert count(Message) == 0


def test_an_edited_template_cannot_be_used_until_approved_again(client, setup, user):
    from app.services import templates

    api_client, key, template, customers = setup
    data = templates.TemplateInput(
        name=template.name,
        category="notice",
        content="尊敬的客户，您的账户{account}入账{amount}元，请查收。",
    )
    templates.update(template.id, user("bj_staff"), data, template.version)
    db.session.commit()
    response = post(client, key, body_for(template, customers))
    assert response.status_code == 409
    assert response.json["error"] == "template_not_approved"
    templates.approve(template.id, user("bj_head"), template.version)
    db.session.commit()
    assert post(client, key, body_for(template, customers)).status_code == 202


# ---------------------------------------------------------------- sending


def test_a_send_creates_one_approved_message_of_the_clients_unit(client, setup):
    api_client, key, template, customers = setup
    response = post(client, key, body_for(template, customers))
    assert response.status_code == 202, response.json
    data = response.json
    message = db.session.get(Message, data["id"])
    assert response.headers["Location"].endswith(f"/api/v1/messages/{message.id}")
    assert (message.status, message.unit_id, message.author_id) == (
        "approved",
        api_client.unit_id,
        api_client.user_id,
    )
    assert message.category == template.category and message.body == template.content
    assert message.approved_version == message.version == 1
    assert message.route == template.route and message.route_article == template.route_article
    assert message.approvals[0].decision == "approve"
    assert f"#{template.id}" in message.approvals[0].comment
    assert data["recipients"] == 3 and data["customers"] == 3 and data["status"] == "approved"
    rows = (
        db.session.execute(
            select(ApiRecipient)
            .where(ApiRecipient.message_id == message.id)
            .order_by(ApiRecipient.position)
        )
        .scalars()
        .all()
    )
    assert [r.customer_id for r in rows] == [c.id for c in customers]
    assert rows[0].values == {"account": f"A{customers[0].id}", "amount": "1,000.00"}
    audit_row = db.session.execute(
        select(AuditLog).where(AuditLog.action == "api.message_accepted")
    ).scalar_one()
    assert audit_row.actor_id == api_client.user_id and audit_row.target_id == str(message.id)


def test_a_head_of_the_clients_unit_may_cancel_an_api_message(client, setup, login_as):
    """The author of an API message is the client's system account: a head of the client's
    unit withdraws it before it sends; staff cannot; the client reads "cancelled"."""
    from datetime import timedelta

    from app.timeutil import to_local, utcnow

    api_client, key, template, customers = setup
    when = to_local(utcnow() + timedelta(days=2)).replace(hour=10, minute=0, microsecond=0)
    body = body_for(template, customers, schedule_at=when.isoformat())
    message_id = post(client, key, body).json["id"]
    url = f"/messages/{message_id}/cancel"

    login_as("bj_staff")
    assert "/cancel" not in client.get(f"/messages/{message_id}").get_data(as_text=True)
    assert client.post(url).status_code == 403
    db.session.expire_all()
    assert db.session.get(Message, message_id).status == "approved"
    client.post("/logout")

    login_as("bj_head")
    assert url in client.get(f"/messages/{message_id}").get_data(as_text=True)
    assert client.post(url).status_code == 302
    db.session.expire_all()
    assert db.session.get(Message, message_id).status == "cancelled"
    row = db.session.execute(
        select(AuditLog).where(AuditLog.action == "message.cancelled")
    ).scalar_one()
    assert row.actor_id is not None
    client._fresh_globals()
    answer = client.c.get(f"/api/v1/messages/{message_id}", headers=auth(key))
    assert answer.json["status"] == "cancelled"


def test_missing_or_extra_variables_are_422_naming_them(client, setup):
    api_client, key, template, customers = setup
    body = body_for(template, customers)
    del body["recipients"][1]["vars"]["amount"]
    response = post(client, key, body)
    assert response.status_code == 422
    assert response.json["error"] == "invalid"
    assert response.json["field"] == "recipients[1].vars.amount"
    assert "amount" in response.json["message"]

    body = body_for(template, customers)
    body["recipients"][2]["vars"]["colour"] = "red"
    response = post(client, key, body)
    assert response.status_code == 422
    assert response.json["field"] == "recipients[2].vars.colour"
    assert "colour" in response.json["message"]

    body = body_for(template, customers)
    body["recipients"][0]["vars"]["name"] = "张三"  # filled from the customer record
    response = post(client, key, body)
    assert response.status_code == 422 and response.json["field"] == "recipients[0].vars.name"
    assert count(Message) == 0 and count(ApiMessage) == 0


def test_error_messages_follow_accept_language(client, setup):
    """Interface users have no session: Chinese by default, English when asked; the error
    code is the same either way."""
    api_client, key, template, customers = setup
    body = body_for(template, customers)
    del body["recipients"][0]["vars"]["amount"]
    chinese = post(client, key, body)
    english = post(client, key, body, **{"Accept-Language": "en-GB,en;q=0.9"})
    assert chinese.status_code == english.status_code == 422
    assert chinese.json["error"] == english.json["error"] == "invalid"
    assert chinese.json["message"] != english.json["message"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in chinese.json["message"])
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in english.json["message"])


@pytest.mark.parametrize(
    "change, field",
    [
        ({"template_id": "1"}, "template_id"),
        ({"recipients": []}, "recipients"),
        ({"recipients": [{"crm_id": "C1", "mobile": "13800138000"}]}, "recipients[0]"),
        ({"recipients": [{"mobile": "12345"}]}, "recipients[0].mobile"),
        ({"recipients": [{"crm_id": "C 1"}]}, "recipients[0].crm_id"),
        (
            {"recipients": [{"crm_id": "NOPE", "vars": {"account": "1", "amount": "2"}}]},
            "recipients[0]",
        ),
        ({"schedule_at": "2001-01-01T09:00:00+08:00"}, "schedule_at"),
        ({"schedule_at": "tomorrow"}, "schedule_at"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_bodies_are_422_naming_the_field(client, setup, change, field):
    api_client, key, template, customers = setup
    response = post(client, key, body_for(template, customers) | change)
    assert response.status_code == 422, response.json
    assert response.json["field"] == field
    assert count(Message) == 0


def test_a_customer_outside_the_branch_is_refused_like_a_missing_one(client, setup):
    api_client, key, template, customers = setup
    elsewhere = make_customer(branch_code="SH01")
    body = body_for(template, customers + [elsewhere])
    response = post(client, key, body)
    assert response.status_code == 422
    assert response.json["field"] == "recipients[3]"
    assert elsewhere.crm_id in response.json["message"]
    assert count(Message) == 0


def test_recipients_by_mobile_and_the_same_customer_twice(client, setup):
    api_client, key, template, customers = setup
    vars_ = {"account": "A1", "amount": "5"}
    body = {
        "template_id": template.id,
        "recipients": [
            {"mobile": customers[0].mobile, "vars": vars_},
            {"crm_id": customers[1].crm_id, "vars": vars_},
        ],
    }
    response = post(client, key, body)
    assert response.status_code == 202 and response.json["customers"] == 2
    body["recipients"].append({"crm_id": customers[0].crm_id, "vars": vars_})
    response = post(client, key, body)
    assert response.status_code == 422
    assert response.json["field"] == "recipients[2]"


def test_more_recipients_than_allowed_is_413(app, client, setup):
    api_client, key, template, customers = setup
    app.config["API_MAX_RECIPIENTS"] = 2
    response = post(client, key, body_for(template, customers))
    assert response.status_code == 413
    assert response.json["error"] == "too_large" and "2" in response.json["message"]
    app.config["API_MAX_BODY_BYTES"] = 100
    response = post(client, key, body_for(template, customers[:1]))
    assert response.status_code == 413
    assert count(Message) == 0


def test_a_body_that_is_not_json(client, setup):
    api_client, key, template, customers = setup
    response = client.c.post(
        URL, data="{not json", headers=auth(key, **{"Content-Type": "application/json"})
    )
    assert response.status_code == 400 and response.json["error"] == "bad_request"
    response = client.c.post(URL, data="a=b", headers=auth(key, **{"Content-Type": "text/plain"}))
    assert response.status_code == 415 and response.json["error"] == "unsupported_media_type"


def test_a_schedule_in_the_future_is_kept(client, setup):
    from datetime import UTC, timedelta

    from app.timeutil import to_local, utcnow

    api_client, key, template, customers = setup
    when = (utcnow() + timedelta(days=2)).replace(microsecond=0)
    for written in (
        to_local(when).isoformat(),  # with the +08:00 offset
        to_local(when).replace(tzinfo=None).isoformat(),  # Asia/Shanghai wall clock
        when.isoformat() + "Z",
    ):
        response = post(client, key, body_for(template, customers, schedule_at=written))
        assert response.status_code == 202, response.json
        assert db.session.get(Message, response.json["id"]).schedule_at == when
        assert response.json["schedule_at"] == when.replace(tzinfo=UTC).isoformat()


# ---------------------------------------------------------------- idempotency


def test_idempotency_key_replays_the_first_answer(client, setup):
    api_client, key, template, customers = setup
    body = body_for(template, customers)
    first = post(client, key, body, **{"Idempotency-Key": "order-20261201-0001"})
    assert first.status_code == 202
    # Same body, keys in another order: the same request.
    reordered = json.loads(json.dumps(body))
    reordered = {"recipients": reordered["recipients"], "template_id": reordered["template_id"]}
    again = post(client, key, reordered, **{"Idempotency-Key": "order-20261201-0001"})
    assert again.status_code == 202
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(Message) == 1 and count(IdempotencyKey) == 1
    accepted = db.session.execute(
        select(func.count()).select_from(AuditLog).where(AuditLog.action == "api.message_accepted")
    ).scalar_one()
    assert accepted == 1

    other = body_for(template, customers[:1])
    conflict = post(client, key, other, **{"Idempotency-Key": "order-20261201-0001"})
    assert conflict.status_code == 409
    assert conflict.json["error"] == "idempotency_key_reused"
    assert count(Message) == 1

    # Another key is another request; a key is per client.
    assert post(client, key, body, **{"Idempotency-Key": "order-20261201-0002"}).status_code == 202
    assert count(Message) == 2


def test_a_refused_request_does_not_burn_its_idempotency_key(client, setup):
    api_client, key, template, customers = setup
    bad = body_for(template, customers)
    del bad["recipients"][0]["vars"]["amount"]
    assert post(client, key, bad, **{"Idempotency-Key": "k1"}).status_code == 422
    assert count(IdempotencyKey) == 0
    assert (
        post(client, key, body_for(template, customers), **{"Idempotency-Key": "k1"}).status_code
        == 202
    )


def test_an_unreadable_idempotency_key_is_422(client, setup):
    api_client, key, template, customers = setup
    response = post(client, key, body_for(template, customers), **{"Idempotency-Key": "x" * 101})
    assert response.status_code == 422 and response.json["field"] == "Idempotency-Key"


# ---------------------------------------------------------------- rate limit


def test_the_rate_limit_answers_429_with_retry_after(client, setup):
    api_client, key, template, customers = setup
    api_client.rate_limit_per_minute = 3
    db.session.commit()
    answers = [client.c.get("/api/v1/messages/1", headers=auth(key)) for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [404, 404, 404]
    assert answers[0].headers["X-RateLimit-Limit"] == "3"
    assert answers[2].headers["X-RateLimit-Remaining"] == "0"
    limited = answers[3]
    assert limited.status_code == 429
    assert limited.json["error"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert post(client, key, body_for(template, customers)).status_code == 429
    assert count(Message) == 0


def test_the_rate_is_per_key(client, setup):
    api_client, key, template, customers = setup
    other, other_key = make_api_client()
    api_client.rate_limit_per_minute = 1
    db.session.commit()
    assert client.c.get("/api/v1/messages/1", headers=auth(key)).status_code == 404
    assert client.c.get("/api/v1/messages/1", headers=auth(key)).status_code == 429
    assert client.c.get("/api/v1/messages/1", headers=auth(other_key)).status_code == 404


# ---------------------------------------------------------------- reading back


def test_status_and_recipients_of_own_messages_only(client, setup):
    api_client, key, template, customers = setup
    message_id = post(client, key, body_for(template, customers)).json["id"]
    response = client.c.get(f"/api/v1/messages/{message_id}", headers=auth(key))
    assert response.status_code == 200
    data = response.json
    assert data["status"] == "approved" and data["counts"]["pending"] == 3
    assert data["counts"]["delivered"] == 0

    page = client.c.get(
        f"/api/v1/messages/{message_id}/recipients?per_page=2", headers=auth(key)
    ).json
    assert (page["total"], page["pages"], len(page["items"])) == (3, 2, 2)
    assert page["items"][0] == {
        "index": 0,
        "crm_id": customers[0].crm_id,
        "status": "pending",
        "reason": "",
        "submitted_at": None,
        "finished_at": None,
    }
    page2 = client.c.get(
        f"/api/v1/messages/{message_id}/recipients?per_page=2&page=2", headers=auth(key)
    ).json
    assert [i["index"] for i in page2["items"]] == [2]
    assert (
        client.c.get(
            f"/api/v1/messages/{message_id}/recipients?status=delivered", headers=auth(key)
        ).json["total"]
        == 0
    )
    bad = client.c.get(f"/api/v1/messages/{message_id}/recipients?status=lost", headers=auth(key))
    assert bad.status_code == 422 and bad.json["field"] == "status"
    bad = client.c.get(f"/api/v1/messages/{message_id}/recipients?page=0", headers=auth(key))
    assert bad.status_code == 422 and bad.json["field"] == "page"

    other, other_key = make_api_client(templates=[])
    for url in (f"/api/v1/messages/{message_id}", f"/api/v1/messages/{message_id}/recipients"):
        response = client.c.get(url, headers=auth(other_key))
        assert response.status_code == 404 and response.json["error"] == "not_found"
    for bad_id in ("0", "-1", "abc", "99999999999"):
        response = client.c.get(f"/api/v1/messages/{bad_id}", headers=auth(key))
        assert response.status_code == 404 and response.is_json


def test_unknown_addresses_and_methods_answer_json(client, setup):
    api_client, key, template, customers = setup
    response = client.c.get("/api/v1/nothing", headers=auth(key))
    assert response.status_code == 404 and response.json["error"] == "not_found"
    response = client.delete(URL, headers=auth(key))
    assert response.status_code == 405 and response.json["error"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]
    response = client.put("/api/v1/messages/1", headers=auth(key))
    assert response.status_code == 405 and "GET" in response.headers["Allow"]


def test_the_api_needs_no_csrf_token_and_sets_no_session(client, setup, login_as):
    api_client, key, template, customers = setup
    response = client.c.post(URL, json=body_for(template, customers), headers=auth(key))
    assert response.status_code == 202
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    # A logged-in browser session is no credential for the API.
    login_as("admin")
    response = client.c.get("/api/v1/messages/1")
    assert response.status_code == 401


def test_openapi_document_is_public_and_names_the_limits(app, client):
    app.config["API_MAX_RECIPIENTS"] = 250
    response = client.c.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/messages",
        "/messages/{message_id}",
        "/messages/{message_id}/recipients",
    }
    schema = spec["components"]["schemas"]["SendRequest"]
    assert "250" in schema["properties"]["recipients"]["description"]
    assert "250" in spec["paths"]["/messages"]["post"]["responses"]["413"]["description"]


def test_last_use_is_noted(client, setup):
    api_client, key, template, customers = setup
    assert api_client.last_used_at is None
    client.c.get("/api/v1/messages/1", headers=auth(key))
    db.session.expire_all()
    assert db.session.get(type(api_client), api_client.id).last_used_at is not None
