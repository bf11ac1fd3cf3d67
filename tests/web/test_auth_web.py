"""Login, lockout, forced password change, idle timeout and logout through the real forms."""

from datetime import timedelta

from sqlalchemy import select

from app.extensions import db
from app.models import LoginEvent
from app.timeutil import utcnow
from tests.factories import make_user


def test_login_page_is_chinese_by_default(client):
    page = client.get("/login").get_data(as_text=True)
    assert "登录" in page and "短信服务管理系统" in page


def test_good_login_reaches_the_dashboard(client, login_as):
    login_as("admin")
    response = client.get("/dashboard")
    assert response.status_code == 200
    assert "市场管理员" in response.get_data(as_text=True)


def test_wrong_password_answers_401_and_is_logged(client, app):
    client.get("/login")
    response = client.post("/login", {"username": "bj_staff", "password": "nope"})
    assert response.status_code == 401
    assert "用户名或密码错误" in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302
    events = (
        db.session.execute(select(LoginEvent).where(LoginEvent.username == "bj_staff"))
        .scalars()
        .all()
    )
    assert [(e.success, e.reason) for e in events] == [(False, "bad_password")]


def test_lockout_through_the_form(client, user):
    client.get("/login")
    for _ in range(5):
        client.post("/login", {"username": "sh_staff", "password": "nope"})
    response = client.post("/login", {"username": "sh_staff", "password": "Demo-2026"})
    assert response.status_code == 401
    assert "锁定" in response.get_data(as_text=True)
    assert user("sh_staff").locked_until > utcnow()


def test_admin_can_unlock(client, login_as, user):
    u = user("sz_staff")
    u.locked_until = utcnow() + timedelta(minutes=10)
    db.session.commit()
    login_as("admin")
    page = client.get(f"/admin/users/{u.id}").get_data(as_text=True)
    assert "解锁" in page
    response = client.post(f"/admin/users/{u.id}/unlock")
    assert response.status_code == 302
    db.session.expire_all()
    assert user("sz_staff").locked_until is None


def test_forced_password_change_at_first_login(client, app):
    u = make_user(username="newbie", password="Initial-Pass-1", must_change_password=True)
    client.get("/login")
    response = client.post("/login", {"username": "newbie", "password": "Initial-Pass-1"})
    assert response.headers["Location"].endswith("/password")
    # Every other page sends the user back to the password form.
    assert client.get("/dashboard").headers["Location"].endswith("/password")
    assert client.get("/dashboard", htmx=True).headers["HX-Redirect"].endswith("/password")
    client.get("/password")
    response = client.post(
        "/password",
        {
            "current_password": "Initial-Pass-1",
            "new_password": "Brand-New-Secret-9",
            "confirm_password": "Brand-New-Secret-9",
        },
    )
    assert response.status_code == 302
    assert client.get("/dashboard").status_code == 200
    db.session.refresh(u)
    assert not u.must_change_password


def test_password_change_with_bad_input_keeps_the_old_password(client, login_as, user):
    login_as("bj_staff")
    client.get("/password")
    response = client.post(
        "/password",
        {"current_password": "Demo-2026", "new_password": "short", "confirm_password": "short"},
    )
    assert response.status_code == 422
    assert "至少" in response.get_data(as_text=True)
    from app.services import auth

    assert auth.authenticate("bj_staff", "Demo-2026")


def test_password_change_ends_other_sessions(app, login_as, client):
    other = app.test_client()
    from tests.conftest import WebClient

    second = WebClient(other)
    second.get("/login")
    second.post("/login", {"username": "bj_staff", "password": "Demo-2026"})
    assert second.get("/dashboard").status_code == 200
    login_as("bj_staff")
    client.get("/password")
    client.post(
        "/password",
        {
            "current_password": "Demo-2026",
            "new_password": "Another-Secret-77",
            "confirm_password": "Another-Secret-77",
        },
    )
    assert client.get("/dashboard").status_code == 200
    assert second.get("/dashboard").status_code == 302  # the other session is over


def test_idle_session_times_out(client, login_as):
    login_as("bj_staff")
    with client.session_transaction() as sess:
        sess["last_seen"] = sess["last_seen"] - 31 * 60
    response = client.get("/dashboard")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    assert client.get("/dashboard").status_code == 302


def test_deactivated_user_is_logged_out(client, login_as, user):
    login_as("ops_staff")
    u = user("ops_staff")
    u.active = False
    db.session.commit()
    assert client.get("/dashboard").status_code == 302


def test_logout_is_audited(client, login_as):
    login_as("bj_staff")
    response = client.post("/logout")
    assert response.status_code == 302
    assert client.get("/dashboard").status_code == 302
    from app.models import AuditLog

    assert db.session.execute(select(AuditLog).where(AuditLog.action == "user.logout")).scalar_one()


def test_login_next_parameter_cannot_leave_the_site(client):
    client.get("/login")
    response = client.post(
        "/login", {"username": "bj_staff", "password": "Demo-2026", "next": "//evil.example.com/"}
    )
    assert response.headers["Location"] == "/dashboard"
