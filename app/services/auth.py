"""Logging in, lockout, login history and password changes (R-11, R-14)."""

from __future__ import annotations

import secrets
import string
from datetime import timedelta

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from app.models import LoginEvent, User
from app.services import audit
from app.services.errors import DomainError, ValidationError
from app.timeutil import utcnow

# A constant-time decoy so that an unknown username costs as much as a wrong password.
_DECOY_HASH = generate_password_hash("decoy-password-never-matches")


class LoginFailed(DomainError):
    status = 401
    default_message = _l("Wrong username or password.")

    def __init__(self, reason: str, message=None):
        super().__init__(message)
        self.reason = reason


def hash_password(password: str) -> str:
    """Hash with the configured method (scrypt in production; tests use a cheaper one)."""
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def _log_attempt(
    user: User | None, username: str, ip: str, user_agent: str, success: bool, reason: str = ""
) -> None:
    db.session.add(
        LoginEvent(
            user_id=user.id if user else None,
            username=username[:60],
            at=utcnow(),
            ip=ip[:64],
            user_agent=user_agent[:300],
            success=success,
            reason=reason,
        )
    )


def authenticate(username: str, password: str, *, ip: str = "", user_agent: str = "") -> User:
    """Check a login and record it; return the user or raise ``LoginFailed``.

    Wrong passwords count towards a lockout (LOGIN_MAX_FAILURES within one
    lock period locks the account for LOGIN_LOCKOUT_MINUTES). The messages for an
    unknown user and a wrong password are the same, so the form does not reveal
    which usernames exist. Commits the login history row in every case.
    """
    cfg = current_app.config
    username = (username or "").strip()
    user = db.session.execute(
        select(User).where(func.lower(User.username) == username.lower())
    ).scalar_one_or_none()
    now = utcnow()
    try:
        if user is None:
            check_password_hash(_DECOY_HASH, password or "")
            raise LoginFailed("unknown_user")
        if not user.active:
            raise LoginFailed("inactive", _l("This account has been deactivated."))
        if user.locked_until and user.locked_until > now:
            raise LoginFailed(
                "locked",
                _l(
                    "Too many failed attempts: the account is locked. Try again later or ask the Market admin."
                ),
            )
        if not check_password_hash(user.password_hash, password or ""):
            user.failed_logins = (user.failed_logins or 0) + 1
            if user.failed_logins >= cfg["LOGIN_MAX_FAILURES"]:
                user.locked_until = now + timedelta(minutes=cfg["LOGIN_LOCKOUT_MINUTES"])
                user.failed_logins = 0
                audit.record(
                    "user.locked",
                    actor=None,
                    target=user,
                    details={"minutes": cfg["LOGIN_LOCKOUT_MINUTES"]},
                    ip=ip,
                )
                raise LoginFailed(
                    "locked_now",
                    _l(
                        "Too many failed attempts: the account is locked. Try again later or ask the Market admin."
                    ),
                )
            raise LoginFailed("bad_password")
    except LoginFailed as exc:
        _log_attempt(user, username, ip, user_agent, False, exc.reason)
        db.session.commit()
        raise
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    _log_attempt(user, username, ip, user_agent, True)
    db.session.commit()
    return user


def validate_new_password(user: User, new_password: str) -> None:
    """Raise ``ValidationError`` unless the password meets the policy."""
    min_len = current_app.config["PASSWORD_MIN_LENGTH"]
    pw = new_password or ""
    if len(pw) < min_len:
        raise ValidationError(_l("The password must have at least %(n)s characters.", n=min_len))
    kinds = sum(
        [
            any(c.islower() for c in pw),
            any(c.isupper() for c in pw),
            any(c.isdigit() for c in pw),
            any(not c.isalnum() for c in pw),
        ]
    )
    if kinds < 3:
        raise ValidationError(
            _l("Use at least three of: lower-case letters, capitals, digits, symbols.")
        )
    if user.username.lower() in pw.lower():
        raise ValidationError(_l("The password must not contain the username."))


def change_password(user: User, current_password: str, new_password: str, confirm: str) -> None:
    """Change a user's own password after checking the current one; commits."""
    if not check_password_hash(user.password_hash, current_password or ""):
        raise ValidationError(_l("The current password is wrong."))
    if new_password != confirm:
        raise ValidationError(_l("The two new passwords differ."))
    if check_password_hash(user.password_hash, new_password or ""):
        raise ValidationError(_l("The new password must differ from the current one."))
    validate_new_password(user, new_password)
    user.password_hash = hash_password(new_password)
    user.must_change_password = False
    user.password_changed_at = utcnow()
    user.session_version = (user.session_version or 1) + 1
    audit.record("user.password_changed", actor=user, target=user)
    db.session.commit()


def generate_initial_password(length: int = 14) -> str:
    """A random password that meets the policy, for an admin to hand over once (R-11)."""
    alphabet = string.ascii_letters + string.digits + "-_#%+"
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(length))
        if (
            any(c.islower() for c in pw)
            and any(c.isupper() for c in pw)
            and any(c.isdigit() for c in pw)
        ):
            return pw


def unlock(user: User, *, actor: User) -> None:
    """Lift a lockout early (Market admin); commits."""
    user.locked_until = None
    user.failed_logins = 0
    audit.record("user.unlocked", actor=actor, target=user)
    db.session.commit()
