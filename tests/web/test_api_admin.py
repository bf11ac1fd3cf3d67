"""The pages of interface users: the execute step of an interface-user application (key
shown once), the Market admin's API client pages (rotate, revoke, rate, bind), the
template pages (write, submit, decide in place, edit voids the approval), permissions."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import ApiClient, AuditLog, MessageTemplate
from app.services import api_clients
from tests.factories import make_api_client, make_template

KEY_RE = re.compile(r'id="api-key">(hxk_[0-9a-f]{8}_[A-Za-z0-9_-]{43})<')


def api_get(client, key, url="/api/v1/messages/1"):
    return client.c.get(url, headers={"Authorization": f"Bearer {key}"})


# ---------------------------------------------------------------- the application's execution


def test_an_executed_interface_user_application_shows_its_key_once(client, login_as, app):
    login_as("bj_head")  # a head's preparation is the head's signature
    response = client.post(
        "/access/new",
        {
            "kind": "interface_user",
            "person_name": "资金清算系统",
            "reason": "对接资金清算系统的到账通知",
            "effective_date": "2020-01-01",
        },
    )
    assert response.status_code == 422  # the date is out of the window: the form says so
    from app.timeutil import local_today

    response = client.post(
        "/access/new",
        {
            "kind": "interface_user",
            "person_name": "资金清算系统",
            "reason": "对接资金清算系统的到账通知",
            "effective_date": local_today().isoformat(),
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    request_id = int(response.headers["Location"].rstrip("/").split("/")[-1])
    client.post("/logout")
    login_as("approver")
    assert client.post(f"/access/{request_id}/approve").status_code == 302
    client.post("/logout")
    login_as("admin")
    page = client.get(f"/access/{request_id}/execute")
    assert page.status_code == 200 and "创建接口客户端“资金清算系统”" in page.get_data(as_text=True)
    response = client.post(f"/access/{request_id}/execute")
    assert response.status_code == 200
    assert response.headers["Cache-Control"].startswith("no-store")
    html = response.get_data(as_text=True)
    key = KEY_RE.search(html).group(1)
    api_client = db.session.execute(select(ApiClient)).scalar_one()
    assert api_client.name == "资金清算系统" and api_client.access_request_id == request_id
    assert api_client.key_prefix == key[:12] and key not in api_client.key_hash
    assert api_client.user.username.startswith("api-") and api_client.user.can("api.send")
    assert api_get(client, key).status_code == 404  # authenticated: no such message
    # Never shown again: not on the application, the client page or a second execution.
    for url in (
        f"/access/{request_id}",
        f"/admin/api-clients/{api_client.id}",
        f"/access/{request_id}/execute",
        "/admin/api-clients/",
    ):
        assert key not in client.get(url).get_data(as_text=True)
    again = client.post(f"/access/{request_id}/execute")
    assert again.status_code == 409 and key not in again.get_data(as_text=True)
    rows = (
        db.session.execute(
            select(AuditLog).where(AuditLog.action.in_(("api_client.created", "access.executed")))
        )
        .scalars()
        .all()
    )
    assert {r.action for r in rows} == {"api_client.created", "access.executed"}
    assert all(key not in r.details for r in rows)


# ---------------------------------------------------------------- rotate, revoke, rate, bind


def test_rotate_shows_a_new_key_once_and_kills_the_old(client, login_as):
    api_client, old_key = make_api_client()
    login_as("admin")
    response = client.post(f"/admin/api-clients/{api_client.id}/rotate")
    assert response.status_code == 200 and response.headers["Cache-Control"].startswith("no-store")
    new_key = KEY_RE.search(response.get_data(as_text=True)).group(1)
    assert new_key != old_key
    assert api_get(client, old_key).status_code == 401
    assert api_get(client, new_key).status_code == 404
    assert new_key not in client.get(f"/admin/api-clients/{api_client.id}").get_data(as_text=True)
    assert (
        db.session.execute(select(AuditLog).where(AuditLog.action == "api_client.rotated"))
        .scalar_one()
        .actor_name
        == "admin"
    )


def test_revoke_needs_a_reason_and_is_final(client, login_as):
    api_client, key = make_api_client()
    login_as("admin")
    response = client.post(f"/admin/api-clients/{api_client.id}/revoke", {"reason": " "})
    assert response.status_code == 422
    assert api_get(client, key).status_code == 404
    response = client.post(f"/admin/api-clients/{api_client.id}/revoke", {"reason": "系统下线"})
    assert response.status_code == 302
    assert api_get(client, key).status_code == 401
    page = client.get(f"/admin/api-clients/{api_client.id}").get_data(as_text=True)
    assert "系统下线" in page and "/rotate" not in page
    assert client.post(f"/admin/api-clients/{api_client.id}/rotate").status_code == 409


def test_rate_change(client, login_as):
    api_client, key = make_api_client()
    login_as("admin")
    assert client.post(f"/admin/api-clients/{api_client.id}/rate", {"rate": "0"}).status_code == 422
    assert client.post(f"/admin/api-clients/{api_client.id}/rate", {"rate": "2"}).status_code == 302
    assert [api_get(client, key).status_code for _ in range(3)] == [404, 404, 429]


def test_bind_and_unbind_templates_in_place(client, login_as):
    template = make_template()
    other_unit = make_template(author="sh_staff", approver="sh_head")
    draft = make_template(approve=False)
    api_client, key = make_api_client()
    login_as("admin")
    page = client.get(f"/admin/api-clients/{api_client.id}").get_data(as_text=True)
    assert f'value="{template.id}"' in page
    assert f'value="{other_unit.id}"' not in page and f'value="{draft.id}"' not in page
    url = f"/admin/api-clients/{api_client.id}/templates"
    response = client.post(url, {"template_id": template.id}, htmx=True)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<html" not in html and 'id="client-bindings"' in html and template.name in html
    assert api_clients.is_bound(api_client, template.id)
    for bad in (other_unit.id, draft.id):
        response = client.post(url, {"template_id": bad}, htmx=True)
        assert response.status_code == 422 and 'id="client-bindings"' in response.get_data(
            as_text=True
        )
    assert client.post(url, {"template_id": template.id}, htmx=True).status_code == 409
    response = client.post(f"{url}/{template.id}/unbind", htmx=True)
    assert response.status_code == 200 and not api_clients.is_bound(api_client, template.id)
    assert client.post(url, {"template_id": template.id}).status_code == 302  # without htmx


# ---------------------------------------------------------------- templates


def test_template_written_submitted_and_approved_in_place(client, login_as, user):
    login_as("bj_staff")
    response = client.post(
        "/templates/new",
        {
            "name": "到账通知",
            "category": "notice",
            "content": "您的账户{account}入账{amount}元。",
            "action": "submit",
        },
    )
    assert response.status_code == 302
    template = db.session.execute(select(MessageTemplate)).scalar_one()
    assert template.status == "pending" and template.route_article == "Art 9"
    page = client.get(f"/templates/{template.id}").get_data(as_text=True)
    assert "{account}" in page and "{amount}" in page and "【和兴证券】" in page
    client.post("/logout")
    login_as("bj_head")
    pending = client.get("/templates/pending").get_data(as_text=True)
    assert f'id="template-item-{template.id}"' in pending
    assert 'id="badge-templates-list_templates">1<' in pending
    response = client.post(
        f"/templates/{template.id}/reject", {"version": template.version}, htmx=True
    )
    assert response.status_code == 422  # a rejection needs its reason
    response = client.post(
        f"/templates/{template.id}/approve",
        {"version": template.version, "comment": "同意"},
        htmx=True,
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert f'id="template-item-{template.id}"' in html and 'hx-swap-oob="delete"' in html
    db.session.refresh(template)
    assert template.is_approved and template.approved_by_id == user("bj_head").id


def test_the_author_never_decides_and_other_units_do_not_see(client, login_as):
    template = make_template(approve=False)
    from app.services import templates

    templates.submit(template.id, template.author)
    db.session.commit()
    login_as("bj_staff")
    assert f"template-item-{template.id}" not in client.get("/templates/pending").get_data(
        as_text=True
    )
    assert client.post(f"/templates/{template.id}/approve", {"version": 1}).status_code == 403
    client.post("/logout")
    login_as("sh_head")
    assert client.get(f"/templates/{template.id}").status_code == 404
    assert client.post(f"/templates/{template.id}/approve", {"version": 1}).status_code == 403
    assert f"template-item-{template.id}" not in client.get("/templates/pending").get_data(
        as_text=True
    )


def test_editing_an_approved_template_voids_its_approval(client, login_as):
    template = make_template()
    api_client, key = make_api_client(templates=[template])
    login_as("bj_staff")
    form = client.get(f"/templates/{template.id}/edit").get_data(as_text=True)
    assert "approved" in form or "已批准" in form or "审批" in form
    response = client.post(
        f"/templates/{template.id}/edit",
        {
            "name": template.name,
            "category": "notice",
            "version": template.version,
            "content": "您的账户{account}今日入账{amount}元，详询95xxx。",
            "action": "save",
        },
    )
    assert response.status_code == 302
    db.session.refresh(template)
    assert template.status == "pending" and not template.is_approved and template.version == 2
    assert [a.decision for a in template.approvals][-2:] == ["void", "submit"]
    admin_page = client.get(f"/templates/{template.id}").get_data(as_text=True)
    assert "void" in admin_page or "作废" in admin_page or "Approval voided" in admin_page


def test_a_template_with_a_stray_brace_is_refused_with_the_input_kept(client, login_as):
    login_as("bj_staff")
    response = client.post(
        "/templates/new", {"name": "坏模板", "category": "notice", "content": "金额{amount 元"}
    )
    assert response.status_code == 422
    assert "金额{amount 元" in response.get_data(as_text=True)
    assert db.session.execute(select(MessageTemplate)).first() is None


def test_an_hq_department_writes_notices_only(client, login_as):
    login_as("ops_staff")
    form = client.get("/templates/new").get_data(as_text=True)
    assert 'value="notice"' in form and 'value="market"' not in form
    response = client.post(
        "/templates/new", {"name": "营销", "category": "market", "content": "新品上线{product}"}
    )
    assert response.status_code == 403


# ---------------------------------------------------------------- permissions


@pytest.mark.parametrize(
    "username, allowed",
    [
        ("admin", True),
        ("bj_staff", False),
        ("bj_head", False),
        ("auditor", False),
        ("approver", False),
        ("finance", False),
    ],
)
def test_only_the_market_admin_manages_api_clients(client, login_as, username, allowed):
    template = make_template()
    api_client, _key = make_api_client()
    login_as(username)
    cid = api_client.id
    gets = ["/admin/api-clients/", f"/admin/api-clients/{cid}"]
    posts = [
        (f"/admin/api-clients/{cid}/templates", {"template_id": template.id}),
        (f"/admin/api-clients/{cid}/rate", {"rate": "5"}),
        (f"/admin/api-clients/{cid}/rotate", {}),
        (f"/admin/api-clients/{cid}/revoke", {"reason": "x"}),
    ]
    for url in gets:
        assert (client.get(url).status_code == 200) is allowed, url
    if not allowed:
        for url, data in posts:
            assert client.post(url, data).status_code == 403, url
        db.session.refresh(api_client)
        assert api_client.active and api_client.rate_limit_per_minute != 5


@pytest.mark.parametrize(
    "username, can_list, can_write",
    [
        ("bj_staff", True, True),
        ("bj_head", True, True),
        ("research_head", True, True),
        ("admin", True, True),
        ("auditor", True, False),
        ("approver", False, False),
        ("callcenter", False, False),
    ],
)
def test_template_pages_by_role(client, login_as, username, can_list, can_write):
    login_as(username)
    assert (client.get("/templates/").status_code == 200) is can_list
    assert (client.get("/templates/new").status_code == 200) is can_write


def test_template_list_serves_page_and_partial(client, login_as):
    make_template()
    login_as("bj_staff")
    page = client.get("/templates/?status=approved")
    partial = client.get("/templates/?status=approved", htmx=True)
    assert "<html" in page.get_data(as_text=True)
    assert "<html" not in partial.get_data(as_text=True)
    assert 'id="templates-table"' in partial.get_data(as_text=True)
    assert "HX-Request" in partial.headers["Vary"]
