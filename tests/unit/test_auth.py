"""Login, lockout, login history and password rules (R-11, R-14)."""

from datetime import timedelta

import pytest
from flask_babel import force_locale
from sqlalchemy import select

from app.extensions import db
from app.models import AuditLog, LoginEvent
from app.services import auth
from app.services.errors import ValidationError
from app.timeutil import utcnow
from tests.factories import make_user


def _events(username):
    return (
        db.session.execute(
            select(LoginEvent).where(LoginEvent.username == username).order_by(LoginEvent.id)
        )
        .scalars()
        .all()
    )


def test_good_login_is_recorded(app, db_backend):
    u = auth.authenticate("bj_staff", "Demo-2026", ip="10.1.2.3", user_agent="pytest")
    assert u.username == "bj_staff"
    [event] = _events("bj_staff")
    assert event.success and event.ip == "10.1.2.3" and event.user_id == u.id
    assert u.last_login_at is not None


def test_unknown_user_and_wrong_password_look_the_same(app, db_backend):
    with pytest.raises(auth.LoginFailed) as unknown:
        auth.authenticate("nobody", "x")
    with pytest.raises(auth.LoginFailed) as wrong:
        auth.authenticate("bj_staff", "wrong")
    assert str(unknown.value.message) == str(wrong.value.message)
    assert unknown.value.reason == "unknown_user" and wrong.value.reason == "bad_password"
    assert [e.success for e in _events("nobody")] == [False]
    assert _events("nobody")[0].user_id is None


def test_lockout_after_five_failures(app, user, db_backend):
    for _ in range(4):
        with pytest.raises(auth.LoginFailed):
            auth.authenticate("sh_staff", "wrong")
    with pytest.raises(auth.LoginFailed) as fifth:
        auth.authenticate("sh_staff", "wrong")
    assert fifth.value.reason == "locked_now"
    # Even the right password is refused while locked.
    with pytest.raises(auth.LoginFailed) as locked:
        auth.authenticate("sh_staff", "Demo-2026")
    assert locked.value.reason == "locked"
    u = user("sh_staff")
    assert u.locked_until > utcnow() + timedelta(minutes=14)
    assert db.session.execute(
        select(AuditLog).where(AuditLog.action == "user.locked", AuditLog.target_id == str(u.id))
    ).scalar_one()
    # After the lock period the right password works again and the counter restarts.
    u.locked_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert auth.authenticate("sh_staff", "Demo-2026").id == u.id
    assert user("sh_staff").failed_logins == 0


def test_a_good_login_resets_the_failure_count(app, user, db_backend):
    for _ in range(4):
        with pytest.raises(auth.LoginFailed):
            auth.authenticate("sz_staff", "wrong")
    auth.authenticate("sz_staff", "Demo-2026")
    with pytest.raises(auth.LoginFailed) as again:
        auth.authenticate("sz_staff", "wrong")
    assert again.value.reason == "bad_password"


def test_deactivated_user_cannot_log_in(app, user, db_backend):
    u = user("ops_staff")
    u.active = False
    db.session.commit()
    with pytest.raises(auth.LoginFailed) as exc:
        auth.authenticate("ops_staff", "Demo-2026")
    assert exc.value.reason == "inactive"


@pytest.mark.parametrize(
    "password, fragment",
    [
        ("Short-1", "at least"),
        ("alllowercaseletters", "three of"),
        ("Has-user1-Name", "username"),
    ],
)
def test_password_policy(app, password, fragment, db_backend):
    u = make_user(username="user1")
    with force_locale("en"), pytest.raises(ValidationError, match=fragment):
        auth.validate_new_password(u, password)


def test_change_password(app, db_backend):
    u = make_user(must_change_password=True, password="Initial-Pass-1")
    version = u.session_version
    with pytest.raises(ValidationError):
        auth.change_password(u, "wrong", "New-Secret-22", "New-Secret-22")
    with pytest.raises(ValidationError):
        auth.change_password(u, "Initial-Pass-1", "New-Secret-22", "Other-Secret-22")
    with pytest.raises(ValidationError):
        auth.change_password(u, "Initial-Pass-1", "Initial-Pass-1", "Initial-Pass-1")
    assert u.must_change_password
    auth.change_password(u, "Initial-Pass-1", "New-Secret-22", "New-Secret-22")
    assert not u.must_change_password
    assert u.session_version == version + 1
    assert auth.authenticate(u.username, "New-Secret-22").id == u.id


def test_generated_initial_password_meets_policy(app, db_backend):
    u = make_user()
    for _ in range(20):
        auth.validate_new_password(u, auth.generate_initial_password())
