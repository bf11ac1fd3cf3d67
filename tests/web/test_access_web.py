"""Permission application pages: the form, the step inbox decided in place with htmx, the
one-time initial password, the printable form, the dashboard and user-page panels."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AccessRequest, User
from app.services import access
from app.timeutil import local_today
from tests.factories import make_access_request, make_customer, make_user


def _new_account_form(**overrides) -> dict:
    data = {
        "kind": "new_account",
        "person_name": "王新",
        "username": "wang_xin",
        "post": "客户经理",
        "roles": "staff_sender",
        "data_scope": "unit",
        "reason": "新入职员工",
        "effective_date": local_today().isoformat(),
    }
    data.update(overrides)
    return data


def _approved(user, **kw) -> AccessRequest:
    req = make_access_request(applicant="bj_head", **kw)
    access.approve(user("approver"), req.id)
    db.session.commit()
    return req


# ---------------------------------------------------------------- the form


def test_the_form_page_and_its_partial(client, login_as):
    login_as("bj_staff")
    page = client.get("/access/new?kind=change")
    assert page.status_code == 200 and "<html" in page.get_data(as_text=True)
    assert "HX-Request" in page.headers["Vary"]
    fragment = client.get("/access/new?kind=deregister", htmx=True)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body and 'id="access-form"' in body
    assert 'name="target_user_id"' in body and 'name="roles"' not in body
    assert "北京客户经理" in body  # the unit's members to choose from


def test_submitting_the_form_creates_the_application(client, login_as, user):
    login_as("bj_staff")
    response = client.post("/access/new", _new_account_form())
    assert response.status_code == 302
    req = db.session.execute(select(AccessRequest)).scalar_one()
    assert response.headers["Location"].endswith(f"/access/{req.id}")
    assert (req.kind, req.status, req.username, req.roles) == (
        "new_account",
        "submitted",
        "wang_xin",
        ["staff_sender"],
    )
    page = client.get(f"/access/{req.id}").get_data(as_text=True)
    assert "王新" in page and "等待部门负责人签字" in page


def test_bad_input_re_renders_the_form_with_the_input_kept(client, login_as):
    login_as("bj_staff")
    response = client.post("/access/new", _new_account_form(username="x", data_scope="all"))
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'value="王新"' in body and "新入职员工" in body
    assert body.count('class="field-error"') == 2
    assert db.session.execute(select(AccessRequest)).first() is None


# ---------------------------------------------------------------- the route, in place


def test_the_whole_route_through_the_pages(client, login_as, user):
    req = make_access_request(applicant="bj_staff", username="route_user")
    login_as("bj_head")
    inbox = client.get("/access/inbox").get_data(as_text=True)
    assert req.number in inbox and "签字" in inbox
    signed = client.post(f"/access/{req.id}/sign", {}, htmx=True)
    body = signed.get_data(as_text=True)
    assert signed.status_code == 200 and "<html" not in body
    assert f'id="access-decision-{req.id}"' in body and "等待公司审批" in body
    assert 'id="badge-access-inbox"' in body and 'hx-swap-oob="true"' in body  # the nav badge
    client.post("/logout")

    login_as("approver")
    assert req.number in client.get("/access/inbox").get_data(as_text=True)
    approved = client.post(f"/access/{req.id}/approve", {})  # without htmx: redirect
    assert approved.status_code == 302 and approved.headers["Location"].endswith(
        f"/access/{req.id}"
    )
    client.post("/logout")

    login_as("admin")
    screen = client.get(f"/access/{req.id}/execute").get_data(as_text=True)
    assert "route_user" in screen and "执行" in screen
    executed = client.post(f"/access/{req.id}/execute", {})
    body = executed.get_data(as_text=True)
    assert executed.status_code == 200
    assert "no-store" in executed.headers["Cache-Control"]
    password = re.search(r'id="initial-password">([^<]+)<', body).group(1)
    assert len(password) >= 12
    # Shown once: not on the execute screen again, the application page or the user page.
    for url in (f"/access/{req.id}/execute", f"/access/{req.id}", f"/access/{req.id}/print"):
        again = client.get(url).get_data(as_text=True)
        assert password not in again, url
    assert "不能再次显示" in client.get(f"/access/{req.id}/execute").get_data(as_text=True)
    new = db.session.execute(select(User).where(User.username == "route_user")).scalar_one()
    assert password not in client.get(f"/admin/users/{new.id}").get_data(as_text=True)
    # Executing twice is refused, and no second password appears.
    twice = client.post(f"/access/{req.id}/execute", {})
    assert twice.status_code == 409 and 'id="initial-password"' not in twice.get_data(as_text=True)
    client.post("/logout")

    # The new user must change the initial password at first login.
    client.get("/login")
    first = client.post("/login", {"username": "route_user", "password": password})
    assert first.status_code == 302 and first.headers["Location"].endswith("/password")
    blocked = client.get("/dashboard")
    assert blocked.status_code == 302 and blocked.headers["Location"].endswith("/password")
    assert "初始密码" in client.get("/password").get_data(as_text=True)
    changed = client.post(
        "/password",
        {
            "current_password": password,
            "new_password": "Brand-New-Pass-7",
            "confirm_password": "Brand-New-Pass-7",
        },
    )
    assert changed.status_code == 302
    assert client.get("/dashboard").status_code == 200


def test_reject_without_reason_answers_422_with_the_box(client, login_as, user):
    req = make_access_request(applicant="bj_staff")
    login_as("bj_head")
    response = client.post(f"/access/{req.id}/reject", {"reason": ""}, htmx=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and "<html" not in body and "flash-error" in body
    assert db.session.get(AccessRequest, req.id).status == "submitted"
    response = client.post(f"/access/{req.id}/reject", {"reason": "不需要"}, htmx=True)
    assert response.status_code == 200 and "已退回" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(AccessRequest, req.id).rejection_reason == "不需要"
    client.post("/logout")
    login_as("bj_staff")
    assert "不需要" in client.get("/access/").get_data(as_text=True)


def test_a_head_of_another_unit_is_refused_in_place(client, login_as, user):
    req = make_access_request(applicant="sh_staff")
    login_as("bj_head")
    # bj_head cannot even see Shanghai's application.
    assert client.post(f"/access/{req.id}/sign", {}, htmx=True).status_code == 404
    assert client.get(f"/access/{req.id}").status_code == 404
    assert db.session.get(AccessRequest, req.id).status == "submitted"


def test_executing_before_approval_is_refused(client, login_as, user):
    req = make_access_request(applicant="bj_staff")
    login_as("admin")
    response = client.post(f"/access/{req.id}/execute", {})
    assert response.status_code == 409
    assert "公司" in response.get_data(as_text=True)
    assert db.session.get(AccessRequest, req.id).status == "submitted"


def test_deregistration_with_customers_offers_the_handover(client, login_as, user):
    staff = make_user(superior=user("bj_head"), password="Staff-Pass-123")
    make_customer(manager=staff)
    req = make_access_request(applicant="bj_head", kind="deregister", target_user_id=staff.id)
    access.approve(user("approver"), req.id)
    db.session.commit()
    login_as("admin")
    screen = client.get(f"/access/{req.id}/execute").get_data(as_text=True)
    assert 'id="access-handover"' in screen and "北京营业部总经理" in screen
    assert f'action="/access/{req.id}/execute"' not in screen
    refused = client.post(f"/access/{req.id}/execute", {})
    assert refused.status_code == 409 and "1" in refused.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, staff.id).active
    client.post("/logout")
    # The user concerned is offered the handover of all customers on the dashboard.
    login_as(staff.username, "Staff-Pass-123")
    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert 'action="/customers/mine/review"' in dashboard and 'name="all" value="1"' in dashboard


# ---------------------------------------------------------------- panels and print


def test_dashboard_lists_open_and_late_deregistrations(client, login_as, user):
    late = make_user()
    open_one = make_user()
    done = make_access_request(
        applicant="bj_head",
        kind="deregister",
        target_user_id=late.id,
        effective_date=local_today() - timedelta(days=1),
    )
    access.approve(user("approver"), done.id)
    access.execute(user("admin"), done.id)
    waiting = make_access_request(
        applicant="bj_head",
        kind="deregister",
        target_user_id=open_one.id,
        effective_date=local_today() - timedelta(days=3),
    )
    db.session.commit()
    login_as("admin")
    body = client.get("/dashboard").get_data(as_text=True)
    panel = body[body.index('id="access-deregistrations"') :]
    assert done.number in panel and waiting.number in panel
    assert "逾期" in panel and "迟办" in panel
    client.post("/logout")
    login_as("bj_staff")
    assert 'id="access-deregistrations"' not in client.get("/dashboard").get_data(as_text=True)


def test_the_admin_user_page_shows_applications_and_role_history(client, login_as, user):
    staff = make_user(roles=("staff_sender",))
    req = make_access_request(
        applicant="bj_head", kind="change", target_user_id=staff.id, roles=["unit_head"]
    )
    access.approve(user("approver"), req.id)
    access.execute(user("admin"), req.id)
    db.session.commit()
    login_as("admin")
    body = client.get(f"/admin/users/{staff.id}").get_data(as_text=True)
    panel = body[body.index('id="access-user-panel"') :]
    assert req.number in panel and "部门负责人/审批人" in panel and "发送员" in panel
    assert "增加" in panel and "移除" in panel


def test_the_printable_form_carries_every_signature(client, login_as, user):
    req = make_access_request(applicant="bj_staff")
    access.sign(user("bj_head"), req.id)
    access.approve(user("approver"), req.id)
    db.session.commit()
    login_as("bj_staff")
    body = client.get(f"/access/{req.id}/print").get_data(as_text=True)
    assert "和兴证券短信服务管理系统操作权限申请/变更表" in body
    for name in ("北京客户经理", "北京营业部总经理", "公司审批人"):
        assert name in body
    assert "print.css" in body and "<script>" not in body


# ---------------------------------------------------------------- permissions on every route

ROUTES = [
    ("get", "/access/", None),
    ("get", "/access/inbox", None),
    ("get", "/access/new", "access.request"),
    ("post", "/access/new", "access.request"),
    ("get", "/access/{id}", None),
    ("get", "/access/{id}/print", None),
    ("post", "/access/{id}/sign", "access.sign"),
    ("post", "/access/{id}/approve", "access.approve"),
    ("post", "/access/{id}/withdraw", "access.request"),
    ("get", "/access/{id}/execute", "access.execute"),
    ("post", "/access/{id}/execute", "access.execute"),
]


@pytest.mark.parametrize(
    "username", ["bj_staff", "bj_head", "approver", "admin", "auditor", "finance", "callcenter"]
)
def test_route_permissions(client, login_as, user, username):
    req = make_access_request(applicant="sz_staff")
    login_as(username)
    holder = user(username)
    for method, url, permission in ROUTES:
        url = url.format(id=req.id)
        response = getattr(client, method)(url, {}) if method == "post" else client.get(url)
        if permission and not holder.can(permission):
            assert response.status_code == 403, (username, method, url)
        else:
            assert response.status_code != 403 or method == "post", (username, method, url)
            assert response.status_code < 500, (username, method, url)
    # Reading another unit's application: only the company-wide roles.
    sees = holder.can_any("access.approve", "access.execute", "admin.users", "audit.view")
    assert client.get(f"/access/{req.id}").status_code == (200 if sees else 404)


def test_anonymous_is_sent_to_login(client):
    for url in ("/access/", "/access/inbox", "/access/new", "/access/1", "/access/1/execute"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_list_filters_and_answers_htmx_with_the_table_only(client, login_as, user):
    mine = make_access_request(applicant="bj_staff")
    other = make_access_request(applicant="bj_head", username="other_one")
    access.reject(user("approver"), other.id, "重复申请")
    db.session.commit()
    login_as("bj_staff")
    page = client.get("/access/")
    assert "<html" in page.get_data(as_text=True) and "HX-Request" in page.headers["Vary"]
    assert mine.number in page.get_data(as_text=True)
    assert other.number not in page.get_data(as_text=True)  # bj_staff sees only their own
    client.post("/logout")
    login_as("bj_head")
    fragment = client.get("/access/?status=rejected", htmx=True).get_data(as_text=True)
    assert "<html" not in fragment and 'id="access-table"' in fragment
    assert other.number in fragment and mine.number not in fragment and "重复申请" in fragment


@pytest.mark.parametrize(
    "end", ["submitted", "signed", "approved", "executed", "rejected", "withdrawn"]
)
def test_every_state_renders_on_every_page(client, login_as, user, end):
    target = make_user(roles=("staff_sender",))
    req = make_access_request(
        applicant="bj_staff", kind="change", target_user_id=target.id, roles=["unit_head"]
    )
    steps = {
        "signed": ["bj_head"],
        "approved": ["bj_head", "approver"],
        "executed": ["bj_head", "approver", "admin"],
    }
    for who in steps.get(end, []):
        {"bj_head": access.sign, "approver": access.approve, "admin": access.execute}[who](
            user(who), req.id
        )
    if end == "rejected":
        access.reject(user("bj_head"), req.id, "不符合岗位要求")
    if end == "withdrawn":
        access.withdraw(user("bj_staff"), req.id)
    db.session.commit()
    login_as("admin")
    for url in (
        f"/access/{req.id}",
        f"/access/{req.id}/print",
        f"/access/{req.id}/execute",
        "/access/",
        "/access/inbox",
        "/dashboard",
        f"/admin/users/{target.id}",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
    label = {
        "submitted": "等待部门负责人签字",
        "signed": "等待公司审批",
        "approved": "等待执行",
        "executed": "已执行",
        "rejected": "已退回",
        "withdrawn": "已撤回",
    }[end]
    assert label in client.get(f"/access/{req.id}").get_data(as_text=True)
