"""Login, logout and password change (R-11, R-14)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from app.extensions import db
from app.security import login_required
from app.services import audit, auth
from app.services.errors import ValidationError

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("main.dashboard")


@bp.get("/login")
def login():
    if current_user.is_authenticated:
        return redirect(url_for("main.dashboard"))
    return render_template("auth/login.html", username="", next=request.args.get("next", ""))


@bp.post("/login")
def login_post():
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    next_url = request.form.get("next", "")
    try:
        user = auth.authenticate(
            username,
            password,
            ip=request.remote_addr or "",
            user_agent=request.headers.get("User-Agent", ""),
        )
    except auth.LoginFailed as exc:
        return render_template(
            "auth/login.html", username=username, next=next_url, error=str(exc.message)
        ), 401
    lang = session.get("lang")
    session.clear()  # a fresh session on login: no fixation
    if lang:
        session["lang"] = lang
    login_user(user)
    session.permanent = True
    if user.must_change_password:
        flash(_("Please choose your own password before you continue."), "info")
        return redirect(url_for("auth.change_password"))
    return redirect(_safe_next(next_url))


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        audit.record("user.logout", actor=current_user, target=current_user)
        db.session.commit()
    logout_user()
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("You have logged out."), "info")
    return redirect(url_for("auth.login"))


@bp.get("/password")
@login_required
def change_password():
    return render_template("auth/change_password.html")


@bp.post("/password")
@login_required
def change_password_post():
    try:
        auth.change_password(
            current_user,
            request.form.get("current_password", ""),
            request.form.get("new_password", ""),
            request.form.get("confirm_password", ""),
        )
    except ValidationError as exc:
        return render_template("auth/change_password.html", error=str(exc.message)), 422
    login_user(
        current_user._get_current_object()
    )  # the session version changed: keep this session, end the others
    flash(_("Your password has been changed."), "success")
    return redirect(url_for("main.dashboard"))
