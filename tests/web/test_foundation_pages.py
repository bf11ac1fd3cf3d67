"""Dashboard, admin pages, audit pages, language switch and the health check."""

import csv
import io

from sqlalchemy import select

from app.extensions import db
from app.models import AuditLog
from app.services import audit


def test_navigation_shows_only_what_the_user_may_use(client, login_as):
    login_as("bj_staff")
    html = client.get("/dashboard").get_data(as_text=True)
    assert "/admin/users" not in html and "/audit/" not in html
    client.post("/logout")
    login_as("auditor")
    html = client.get("/dashboard").get_data(as_text=True)
    assert "/audit/" in html and "/admin/users" not in html


def test_admin_lists_units_users_and_roles(client, login_as, user):
    login_as("admin")
    units = client.get("/admin/units").get_data(as_text=True)
    for name in [
        "市场业务部",
        "研究发展部",
        "北京营业部",
        "上海营业部",
        "深圳营业部",
        "运营管理部",
    ]:
        assert name in units
    users = client.get("/admin/users?q=bj_").get_data(as_text=True)
    assert "bj_head" in users and "bj_staff" in users and "sh_head" not in users
    detail = client.get(f"/admin/users/{user('bj_staff').id}").get_data(as_text=True)
    assert "北京营业部总经理" in detail  # the superior
    roles = client.get("/admin/roles").get_data(as_text=True)
    assert "公司审批人" in roles and "message.approve" in roles


def test_admin_sets_a_users_work_mobile(client, login_as, user):
    """The number internal notices go to: validated, normalised, audited with the last
    four digits only; only user administrators may set it."""
    staff = user("bj_staff")
    url = f"/admin/users/{staff.id}/mobile"
    login_as("bj_head")
    assert client.post(url, data={"mobile": "13811112222"}).status_code == 403
    client.post("/logout")
    login_as("admin")
    response = client.post(url, data={"mobile": "+86 138-1111-2222"})
    assert response.status_code == 302
    db.session.expire_all()
    assert user("bj_staff").mobile == "13811112222"
    assert 'value="13811112222"' in client.get(f"/admin/users/{staff.id}").get_data(as_text=True)
    row = db.session.execute(
        select(AuditLog).where(AuditLog.action == "user.mobile_changed")
    ).scalar_one()
    assert "13811112222" not in row.details and "2222" in row.details
    # A bad number is refused, says why, and changes nothing.
    page = client.post(url, data={"mobile": "12345"}, follow_redirects=True)
    assert "11" in page.get_data(as_text=True)
    db.session.expire_all()
    assert user("bj_staff").mobile == "13811112222"
    # Empty clears it.
    client.post(url, data={"mobile": ""})
    db.session.expire_all()
    assert user("bj_staff").mobile == ""
    actions = db.session.execute(
        select(AuditLog.action).where(AuditLog.action == "user.mobile_changed")
    ).all()
    assert len(actions) == 2


def test_login_history_on_the_user_page(client, login_as, user):
    client.get("/login")
    client.post("/login", {"username": "bj_staff", "password": "wrong"})
    login_as("admin")
    html = client.get(f"/admin/users/{user('bj_staff').id}").get_data(as_text=True)
    assert "密码错误" in html


def test_audit_page_filters_and_serves_a_partial(client, login_as, user):
    audit.record("probe.something", actor=user("bj_head"), target_type="customer", target_id=9)
    db.session.commit()
    login_as("auditor")
    page = client.get("/audit/?action=probe.")
    html = page.get_data(as_text=True)
    assert "<html" in html and "probe.something" in html and "user.created" not in html
    assert "HX-Request" in page.headers["Vary"]
    fragment = client.get("/audit/?action=probe.", htmx=True).get_data(as_text=True)
    assert "<html" not in fragment and 'id="audit-results"' in fragment
    assert client.get("/audit/?since=yesterday").status_code == 422


def test_audit_export_is_csv_and_neutralises_formulas(client, login_as, user):
    audit.record(
        "probe.formula", actor=user("bj_head"), target_type='=HYPERLINK("http://x")', target_id=1
    )
    db.session.commit()
    login_as("auditor")
    response = client.get("/audit/export.csv?action=probe.")
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][:4] == ["id", "time", "actor", "action"]
    [row] = rows[1:]
    assert row[3] == "probe.formula"
    assert row[4].startswith("'=")
    # The export itself is on record.
    assert db.session.execute(
        select(AuditLog).where(AuditLog.action == "audit.exported")
    ).scalar_one()


def test_language_switch(client, login_as):
    login_as("bj_staff")
    response = client.post("/language", {"lang": "en", "next": "/dashboard"})
    assert response.headers["Location"] == "/dashboard"
    html = client.get("/dashboard").get_data(as_text=True)
    assert "Dashboard" in html and "Log out" in html
    client.post("/language", {"lang": "zh", "next": "https://evil.example/"})
    assert "首页" in client.get("/dashboard").get_data(as_text=True)


def test_healthz(client):
    response = client.get("/healthz")
    body = response.get_json()
    assert response.status_code == 200
    assert body["database"]["ok"] and body["redis"]["ok"]
    assert body["worker"]["ok"] is False  # no worker runs in this test


def test_healthz_sees_a_worker_heartbeat(app, client):
    from app.jobs.worker import make_worker

    worker = make_worker(app, ["default"], simple=True)
    worker.register_birth()
    worker.heartbeat()
    try:
        body = client.get("/healthz").get_json()
        assert body["worker"]["ok"] and body["worker"]["count"] == 1
    finally:
        worker.register_death()
