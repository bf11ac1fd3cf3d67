"""Dashboard, language switch and health check."""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user

from app.security import login_required
from app.services.health import health_report
from app.views.nav import DASHBOARD_PANELS, collect_panels

bp = Blueprint("main", __name__)


@bp.get("/")
def index():
    if current_user.is_authenticated:
        return redirect(url_for("main.dashboard"))
    return redirect(url_for("auth.login"))


@bp.get("/dashboard")
@login_required
def dashboard():
    panels, context = collect_panels(DASHBOARD_PANELS, current_user)
    return render_template("main/dashboard.html", dashboard_panels=panels, **context)


@bp.post("/language")
def set_language():
    """Switch the UI language; the choice is kept in the session and a cookie."""
    lang = request.form.get("lang", "")
    if lang not in current_app.config["LANGUAGES"]:
        lang = current_app.config["BABEL_DEFAULT_LOCALE"]
    session["lang"] = lang
    target = request.form.get("next") or url_for("main.index")
    if not target.startswith("/") or target.startswith("//"):
        target = url_for("main.index")
    response = redirect(target)
    response.set_cookie("lang", lang, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return response


@bp.get("/healthz")
def healthz():
    """Database, Redis and worker heartbeat as JSON; 503 when the database or Redis is down."""
    report = health_report()
    status = 200 if report["database"]["ok"] and report["redis"]["ok"] else 503
    return jsonify(report), status
