"""Carrier webhooks (R-51): delivery reports and customers' replies coming back.

No login and no CSRF token (a carrier has neither); each request authenticates itself:

- Kannel (``/webhooks/kannel/dlr``, ``/webhooks/kannel/mo``): the secret
  ``KANNEL_WEBHOOK_TOKEN`` as ``token`` in the query string, the way Kannel's dlr-url and
  get-url can carry it;
- other carriers (``/webhooks/sms/status``, ``/webhooks/sms/inbound``): JSON whose raw
  body is signed with HMAC-SHA256 under ``WEBHOOK_SECRET``, hex in ``X-Signature``.

A bad token or signature gets 401 and nothing is stored. Everything else that
authenticates is kept: an unknown recipient is logged and answered 200 (the carrier
must stop retrying a report we can never match); malformed input is 400. Handlers are
idempotent (see ``delivery_reports`` and ``replies``), so the carriers' retries are safe.
docs/webhooks.md has example requests.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import hmac
import json
import logging
from urllib.parse import parse_qsl

from flask import Blueprint, current_app, jsonify, request

from app.extensions import csrf, db
from app.services import delivery_reports, replies
from app.services.errors import ValidationError

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
csrf.exempt(bp)

MAX_BODY = 256 * 1024  # a 10,000-character reply is 30 KB in UTF-8


def _answer(status: int, **body):
    response = jsonify(ok=200 <= status < 300, **body)
    response.status_code = status
    return response


def _decode(raw: bytes, charset: str = "") -> str:
    """Text bytes from a gateway: the charset it names, else UTF-8, else GB18030 (a
    misconfigured gateway sending Chinese in the national encoding), never an exception."""
    candidates = []
    if charset:
        with contextlib.suppress(LookupError):
            candidates.append(codecs.lookup(charset.strip().strip('"')).name)
    candidates += ["utf-8", "gb18030"]
    for name in candidates:
        try:
            return raw.decode(name)
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", "replace")


def _raw_query() -> dict[str, bytes]:
    """The query string as bytes per parameter: Kannel percent-encodes whatever bytes the
    carrier gave it, which are not always UTF-8."""
    pairs = parse_qsl(
        request.query_string.decode("latin-1"), keep_blank_values=True, encoding="latin-1"
    )
    return {key: value.encode("latin-1") for key, value in pairs}


# ------------------------------------------------------------------ Kannel


def _kannel_authenticated(params: dict[str, bytes]) -> bool:
    expected = current_app.config.get("KANNEL_WEBHOOK_TOKEN") or ""
    given = params.get("token", b"")
    return bool(expected) and hmac.compare_digest(given, expected.encode())


@bp.route("/kannel/dlr", methods=["GET", "POST"])
def kannel_dlr():
    """A Kannel delivery report: ``rid`` (our recipient id), ``status`` (%d), ``answer``."""
    params = _raw_query()
    if not _kannel_authenticated(params):
        log.warning("Kannel DLR with a bad token from %s", request.remote_addr)
        return _answer(401, error="bad token")
    try:
        kind = int(params.get("status", b""))
    except ValueError:
        return _answer(400, error="status must be Kannel's report type (%d)")
    outcome = delivery_reports.KANNEL_TYPES.get(kind)
    rid_raw = params.get("rid", b"").decode("latin-1")[:60]
    if outcome is None:
        log.warning("Kannel DLR of unknown type %s for recipient %r ignored", kind, rid_raw)
        return _answer(200, ignored="type")
    rid = int(rid_raw) if rid_raw.isdigit() else None
    answer = _decode(params.get("answer", b""))
    result = delivery_reports.apply_report(
        gateway="kannel",
        recipient_id=rid,
        outcome=outcome,
        code=str(kind),
        detail=answer,
        dedupe_key=f"kannel:{rid_raw}:{kind}",
    )
    db.session.commit()
    return _answer(200, known=result.known, changed=result.changed)


@bp.route("/kannel/mo", methods=["GET", "POST"])
def kannel_mo():
    """A reply forwarded by Kannel's sms-service: get-url (query) or post-url (text body)."""
    params = _raw_query()
    if not _kannel_authenticated(params):
        log.warning("Kannel MO with a bad token from %s", request.remote_addr)
        return _answer(401, error="bad token")
    if request.method == "POST":
        body = request.get_data(cache=False)[:MAX_BODY]
        text = _decode(body, request.mimetype_params.get("charset", ""))
        sender = request.headers.get("X-Kannel-From", "") or _decode(params.get("from", b""))
        to = request.headers.get("X-Kannel-To", "") or _decode(params.get("to", b""))
    else:
        raw = params["raw"] if "raw" in params else params.get("text", b"")
        text = _decode(raw, _decode(params.get("charset", b"")))
        sender = _decode(params.get("from", b""))
        to = _decode(params.get("to", b""))
    external_id = _decode(params.get("id", b"")).strip()
    try:
        reply, created = replies.receive(
            gateway="kannel",
            mobile=sender,
            text=text,
            to_number=to,
            external_id=external_id or None,
            received=_decode(params.get("ts", b"")),
        )
    except ValidationError as exc:
        db.session.rollback()
        return _answer(400, error=str(exc.message))
    db.session.commit()
    return _answer(200, reply=reply.id, created=created)


# ------------------------------------------------------------------ signed JSON


def _signed_json():
    """(payload, None) for a correctly signed JSON body, else (None, error response)."""
    secret = current_app.config.get("WEBHOOK_SECRET") or ""
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY:
        return None, _answer(413, error="body too large")
    signature = (request.headers.get("X-Signature") or "").strip().lower()
    signature = signature.removeprefix("sha256=")
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest() if secret else ""
    if not secret or not hmac.compare_digest(signature, expected):
        log.warning("%s with a bad signature from %s", request.path, request.remote_addr)
        return None, _answer(401, error="bad signature")
    try:
        payload = json.loads(_decode(raw, request.mimetype_params.get("charset", "")))
    except ValueError:
        return None, _answer(400, error="malformed JSON")
    events = payload if isinstance(payload, list) else [payload]
    if not events or len(events) > 1000 or not all(isinstance(e, dict) for e in events):
        return None, _answer(400, error="expected an object or a list of 1 to 1,000 objects")
    return events, None


@bp.post("/sms/status")
def sms_status():
    """Delivery reports as JSON: ``{"id", "recipient_id", "status", "error"}`` (or a list)."""
    events, error = _signed_json()
    if error is not None:
        return error
    for event in events:
        if event.get("status") not in delivery_reports.OUTCOMES:
            return _answer(
                400, error=f"status must be one of {', '.join(delivery_reports.OUTCOMES)}"
            )
    results = []
    for event in events:
        raw_id = str(event.get("recipient_id", event.get("reference", "")))[:60]
        rid = int(raw_id) if raw_id.isdigit() else None
        event_id = str(event.get("id") or "")[:80]
        key = f"json:{event_id}" if event_id else f"json:{raw_id}:{event['status']}"
        result = delivery_reports.apply_report(
            gateway="json",
            recipient_id=rid,
            outcome=event["status"],
            code=str(event.get("code") or "")[:20],
            detail=str(event.get("error") or ""),
            dedupe_key=key,
        )
        results.append({"recipient_id": raw_id, "known": result.known, "changed": result.changed})
    db.session.commit()
    return _answer(200, results=results)


@bp.post("/sms/inbound")
def sms_inbound():
    """Replies as JSON: ``{"id", "from", "to", "text", "received_at"}`` (or a list)."""
    events, error = _signed_json()
    if error is not None:
        return error
    for event in events:
        if not isinstance(event.get("from"), str | int) or not isinstance(
            event.get("text", ""), str
        ):
            return _answer(400, error='each reply needs "from" and a text')
    results = []
    try:
        for event in events:
            reply, created = replies.receive(
                gateway="json",
                mobile=str(event["from"]),
                text=event.get("text") or "",
                to_number=str(event.get("to") or ""),
                external_id=str(event.get("id") or "") or None,
                received=str(event.get("received_at") or ""),
            )
            results.append({"reply": reply.id, "created": created})
    except ValidationError as exc:
        db.session.rollback()
        return _answer(400, error=str(exc.message))
    db.session.commit()
    return _answer(200, results=results)
