"""The REST API for interface users (R-15): ``/api/v1``, JSON only, ``Authorization:
Bearer <key>``, no session and no CSRF token (the key is the credential).

Views stay thin: authenticate the key and count the call (``app.services.api_clients``),
call one function of ``app.services.api_messages``, answer JSON. Every error, domain
or HTTP, answers ``{"error": code, "message": text}`` (plus ``field`` when one field is
to blame) with its status; the OpenAPI document at ``/api/v1/openapi.json`` describes
exactly these answers and the schemathesis test holds the API to it.
"""

from __future__ import annotations

import json

from flask import Blueprint, current_app, g, jsonify, request, url_for
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Rule

from app.extensions import csrf, db, login_manager
from app.services import api_clients, api_messages
from app.services.errors import DomainError, PermissionDenied, ValidationError
from app.services.errors import NotFound as DomainNotFound

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

# Error codes by status, for errors that carry no more specific one.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "server_error",
    503: "unavailable",
}


@bp.before_app_request
def _no_session_for_the_api():
    """API calls ignore the session cookie: the key alone says who calls. Setting the
    request's user to anonymous before the session rules run keeps them (idle timeout,
    forced password change) and Flask-Login away from API requests."""
    if request.blueprint == "api":
        g._login_user = login_manager.anonymous_user()


@bp.after_request
def _api_headers(response):
    response.headers["Cache-Control"] = "no-store"
    state = g.get("api_rate")
    if state is not None:
        response.headers["X-RateLimit-Limit"] = str(state.limit)
        response.headers["X-RateLimit-Remaining"] = str(state.remaining)
        response.headers["X-RateLimit-Reset"] = str(state.reset)
    return response


def _error(status: int, code: str, message: str, *, field=None, headers=None):
    body = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError):
    db.session.rollback()
    headers = {}
    if isinstance(exc, api_clients.Unauthorized):
        code = "unauthorized"
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    elif isinstance(exc, api_clients.RateLimited):
        code = "rate_limited"
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, api_clients.ServiceUnavailable):
        code = "unavailable"
        headers["Retry-After"] = "5"
    elif isinstance(exc, api_messages.IdempotencyConflict):
        code = "idempotency_key_reused"
    elif isinstance(exc, api_messages.TemplateNotApproved):
        code = "template_not_approved"
    elif isinstance(exc, PermissionDenied):
        code = "forbidden"
    elif isinstance(exc, DomainNotFound):
        code = "not_found"
    elif isinstance(exc, ValidationError):
        code = "invalid"
    else:
        code = CODES.get(exc.status, "error")
    return _error(
        exc.status, code, str(exc.message), field=exc.details.get("field"), headers=headers
    )


def _http_error(exc: HTTPException):
    db.session.rollback()
    status = exc.code or 500
    headers = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    message = {
        400: _("The request could not be read."),
        404: _("There is no such resource."),
        405: _("This address does not accept that method."),
        413: _("The request is too large."),
        415: _("Send the body as application/json."),
        500: _("Something went wrong on our side. The error has been logged."),
    }.get(status, exc.description or "")
    return _error(status, CODES.get(status, "error"), str(message), headers=headers)


# Flask looks handlers up by status code before by class, app-wide first for a code: the
# API registers each code the app has a page for, so its answers stay JSON.
for _code in (400, 404, 405, 413, 415, 500):
    bp.register_error_handler(_code, _http_error)
bp.register_error_handler(HTTPException, _http_error)


def _client():
    """The calling client: key checked (401), call counted (429), last use noted."""
    client = api_clients.authenticate(request.headers.get("Authorization"))
    g.api_rate = api_clients.check_rate(client)
    if api_clients.touch(client):
        db.session.commit()  # noted even when the call then fails
    return client


def _json_body():
    """The request's JSON body; 413 over API_MAX_BODY_BYTES, 415 if not JSON, 400 unreadable."""
    limit = int(current_app.config["API_MAX_BODY_BYTES"])
    if request.content_length is not None and request.content_length > limit:
        raise api_messages.PayloadTooLarge(_("The body is larger than %(n)s bytes.", n=limit))
    if not request.is_json:
        return None, _error(415, "unsupported_media_type", _("Send the body as application/json."))
    raw = request.get_data(cache=False)
    if len(raw) > limit:
        raise api_messages.PayloadTooLarge(_("The body is larger than %(n)s bytes.", n=limit))
    try:
        return json.loads(raw.decode("utf-8")), None
    except (UnicodeDecodeError, ValueError):
        return None, _error(400, "bad_request", _("The body is not valid JSON."))


# ---------------------------------------------------------------- endpoints


@bp.post("/messages")
def create_message():
    """Send a bound, approved template to listed customers: 202 with the message id."""
    client = _client()
    payload, problem = _json_body()
    if problem is not None:
        db.session.commit()  # the client's last use
        return problem
    key = request.headers.get("Idempotency-Key")
    answer = api_messages.accept(client, payload, idempotency_key=key)
    db.session.commit()
    response = jsonify(answer.body)
    response.status_code = answer.status
    if answer.body.get("id"):
        response.headers["Location"] = url_for("api.get_message", message_id=answer.body["id"])
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/messages/<message_id>")
def get_message(message_id: str):
    """Status and counts per outcome of one of the key's messages (404 for any other)."""
    client = _client()
    body = api_messages.message_status(client, message_id)
    db.session.commit()
    return jsonify(body)


@bp.get("/messages/<message_id>/recipients")
def get_recipients(message_id: str):
    """The message's recipients with their outcomes, a page at a time."""
    client = _client()
    body = api_messages.recipients_page(
        client,
        message_id,
        status=request.args.get("status"),
        page=request.args.get("page"),
        per_page=request.args.get("per_page"),
    )
    db.session.commit()
    return jsonify(body)


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 document of this API (public: it holds no data)."""
    from app.views.api_openapi import build_spec

    return jsonify(build_spec())


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def unrouted(rest: str = ""):
    """Anything else under /api/v1 answers in JSON too: 405 with Allow for a known
    address and another method, else 404."""
    adapter = current_app.url_map.bind("api.local")
    allowed = []
    for method in _METHODS:
        try:
            endpoint, _args = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != "api.unrouted":
            allowed.append(method)
    if allowed:
        raise MethodNotAllowed(valid_methods=allowed + (["HEAD"] if "GET" in allowed else []))
    raise NotFound()


@bp.record_once
def _catch_all(state):
    """A rule without a method list matches every method (TRACE, QUERY, anything), so the
    requests no endpoint takes still reach ``unrouted`` and answer in JSON; Flask's own
    rules always carry a method list, hence the werkzeug Rule."""
    state.app.view_functions["api.unrouted"] = unrouted
    for path in ("/api/v1/", "/api/v1/<path:rest>"):
        state.app.url_map.add(Rule(path, endpoint="api.unrouted"))
