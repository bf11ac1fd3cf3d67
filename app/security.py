"""Authentication glue, the one permission decorator, session rules and security headers.

- ``permission_required(*perms)``: every protected view uses it (R-81 role checks).
- Idle timeout (R-14): a session unused for SESSION_IDLE_MINUTES is ended server-side.
- Forced password change (R-11): a user with an initial password can reach only
  the change-password page and logout.
- Content-Security-Policy without inline script, and the usual hardening headers.
"""

from __future__ import annotations

from functools import wraps
from time import time

from flask import abort, current_app, flash, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, logout_user

from app.extensions import db
from app.models import User

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)

# Endpoints a logged-in user with an initial password may still reach.
_PASSWORD_CHANGE_ALLOWED = {
    "auth.change_password",
    "auth.change_password_post",
    "auth.logout",
    "static",
    "main.set_language",
    "main.healthz",
}


def load_user(user_key: str) -> User | None:
    """Flask-Login loader. The key carries the session version, so a password change
    or deactivation ends every other session of that user."""
    try:
        user_id, version = (int(x) for x in user_key.split(":", 1))
    except (ValueError, AttributeError):
        return None
    user = db.session.get(User, user_id)
    if user is None or not user.active or user.session_version != version:
        return None
    return user


def unauthorized():
    if request.headers.get("HX-Request") == "true":
        response = current_app.response_class(status=401)
        response.headers["HX-Redirect"] = url_for("auth.login")
        return response
    flash(_("Please log in."), "info")
    return redirect(
        url_for("auth.login", next=request.full_path if request.method == "GET" else None)
    )


def permission_required(*permissions: str):
    """Require a logged-in user holding every permission named; else 403 (or login)."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                return current_app.login_manager.unauthorized()
            if not current_user.can(*permissions):
                abort(403)
            return view(*args, **kwargs)

        wrapped.required_permissions = permissions
        return wrapped

    return decorator


def login_required(view):
    """Any logged-in user (pages every role has, such as the dashboard)."""
    return permission_required()(view)


def _enforce_session_rules():
    if not current_user.is_authenticated:
        return None
    idle = current_app.config["SESSION_IDLE_MINUTES"] * 60
    last = session.get("last_seen", 0)
    now = int(time())
    if last and now - last > idle:
        logout_user()
        session.clear()
        flash(_("Your session ended after a period without activity. Please log in again."), "info")
        return current_app.login_manager.unauthorized()
    session["last_seen"] = now
    session.permanent = True
    if current_user.must_change_password and request.endpoint not in _PASSWORD_CHANGE_ALLOWED:
        if request.headers.get("HX-Request") == "true":
            response = current_app.response_class(status=403)
            response.headers["HX-Redirect"] = url_for("auth.change_password")
            return response
        return redirect(url_for("auth.change_password"))
    return None


def _security_headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if current_user and getattr(current_user, "is_authenticated", False):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def init_security(app) -> None:
    app.before_request(_enforce_session_rules)
    app.after_request(_security_headers)
