"""Error pages and the one place domain errors become status codes."""

from __future__ import annotations

from flask import render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError

from app.extensions import db
from app.services.errors import DomainError

_TITLES = {
    400: _l("Bad request"),
    401: _l("Please log in"),
    403: _l("Permission denied"),
    404: _l("Not found"),
    405: _l("Method not allowed"),
    409: _l("Conflict"),
    413: _l("Too large"),
    422: _l("Invalid input"),
    429: _l("Too many requests"),
    500: _l("Server error"),
}


def _render(status: int, message: str):
    title = str(_TITLES.get(status, _l("Error")))
    if request.headers.get("HX-Request") == "true":
        return render_template(
            "errors/_message.html", status=status, title=title, message=message
        ), status
    return render_template("errors/error.html", status=status, title=title, message=message), status


def init_errors(app) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return _render(
            400,
            _(
                "The form expired or did not come from this site (security token missing or wrong). Reload the page and try again."
            ),
        )

    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError):
        db.session.rollback()
        return _render(exc.status, str(exc.message))

    @app.errorhandler(403)
    def forbidden(exc):
        return _render(
            403,
            _(
                "Your roles do not allow this page or action. Ask the Market Business Dept if you need it."
            ),
        )

    @app.errorhandler(404)
    def not_found(exc):
        return _render(404, _("There is no such page, or it is not in your data scope."))

    @app.errorhandler(405)
    def not_allowed(exc):
        return _render(405, _("This address does not accept that kind of request."))

    @app.errorhandler(413)
    def too_large(exc):
        return _render(413, _("The upload is larger than allowed."))

    @app.errorhandler(500)
    def server_error(exc):
        db.session.rollback()
        return _render(500, _("Something went wrong on our side. The error has been logged."))
