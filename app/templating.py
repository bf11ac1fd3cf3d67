"""Template filters and globals shared by every page."""

from __future__ import annotations

from flask import request
from flask_babel import format_datetime, get_locale
from flask_login import current_user

from app.services.scope import show_mobile
from app.timeutil import to_local, utcnow


def init_templating(app) -> None:
    @app.template_filter("local_dt")
    def local_dt(value, fmt: str = "yyyy-MM-dd HH:mm"):
        if value is None:
            return ""
        return (
            to_local(value).strftime("%Y-%m-%d %H:%M")
            if fmt == "plain"
            else format_datetime(to_local(value), fmt)
        )

    @app.template_filter("mobile")
    def mobile(value):
        return show_mobile(current_user, value) if current_user.is_authenticated else ""

    app.jinja_env.globals["now_utc"] = utcnow

    @app.context_processor
    def inject():
        from app.views.nav import nav_items

        return {
            "current_locale": str(get_locale()),
            "nav_items": nav_items() if current_user.is_authenticated else [],
            "current_path": request.path,
        }
