"""Locale choice: Simplified Chinese first, English on request (R-81)."""

from flask import current_app, has_request_context, request, session


def select_locale() -> str:
    if not has_request_context():
        return current_app.config["BABEL_DEFAULT_LOCALE"]
    chosen = session.get("lang")
    if chosen in current_app.config["LANGUAGES"]:
        return chosen
    cookie = request.cookies.get("lang")
    if cookie in current_app.config["LANGUAGES"]:
        return cookie
    if request.blueprint == "api":
        # Interface users have no session: their Accept-Language chooses; Chinese first.
        return request.accept_languages.best_match(
            current_app.config["LANGUAGES"], current_app.config["BABEL_DEFAULT_LOCALE"]
        )
    return current_app.config["BABEL_DEFAULT_LOCALE"]


def select_timezone() -> str:
    return current_app.config["TIMEZONE"]
