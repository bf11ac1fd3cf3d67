"""The carrier simulator page (R-51): what each number "received" from the simulator
gateway, and a reply box to answer as the customer would, for developers and trainers.

It only works while ``SMS_GATEWAY`` is ``simulator``; with a real gateway the page says so
and refuses replies (a trainer must never inject replies into production)."""

from __future__ import annotations

import uuid

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from app.extensions import db
from app.models import InboundReply, SimulatedSms
from app.security import permission_required
from app.services import audit, replies, scope
from app.services.customers import normalize_mobile
from app.services.errors import Conflict, ValidationError

bp = Blueprint("simulator", __name__, url_prefix="/simulator")


def _active() -> bool:
    return current_app.config.get("SMS_GATEWAY") == "simulator"


@bp.get("")
@permission_required("send.simulator")
def list_numbers():
    q = normalize_mobile(request.args.get("q", ""))
    query = (
        select(SimulatedSms.mobile, func.count(), func.max(SimulatedSms.created_at))
        .group_by(SimulatedSms.mobile)
        .order_by(func.max(SimulatedSms.created_at).desc())
    )
    if q:
        query = query.where(SimulatedSms.mobile.like(f"%{q[-11:]}%"))
    numbers = db.session.execute(query.limit(100)).all()
    return render_template("simulator/list.html", numbers=numbers, q=q, active=_active())


@bp.get("/<mobile>")
@permission_required("send.simulator")
def phone(mobile: str):
    number = normalize_mobile(mobile)
    received = (
        db.session.execute(
            select(SimulatedSms)
            .where(SimulatedSms.mobile == number)
            .order_by(SimulatedSms.id.desc())
            .limit(200)
        )
        .scalars()
        .all()
    )
    sent = (
        db.session.execute(
            select(InboundReply)
            .where(InboundReply.mobile == number)
            .order_by(InboundReply.id.desc())
            .limit(200)
        )
        .scalars()
        .all()
    )
    thread = sorted(
        [("in", m.created_at, m) for m in received] + [("out", r.received_at, r) for r in sent],
        key=lambda item: item[1],
    )
    return render_template("simulator/phone.html", mobile=number, thread=thread, active=_active())


@bp.post("/<mobile>/reply")
@permission_required("send.simulator")
def reply(mobile: str):
    number = normalize_mobile(mobile)
    text = request.form.get("text", "")
    try:
        if not _active():
            raise Conflict(_("The carrier simulator is off: replies come from the real gateway."))
        if not text.strip():
            raise ValidationError(_("Type the customer's reply first."))
        reply, _created = replies.receive(
            gateway="simulator",
            mobile=number,
            text=text,
            to_number=current_app.config["KANNEL_FROM"],
            external_id=uuid.uuid4().hex,
        )
        audit.record(
            "simulator.reply",
            actor=current_user,
            target=reply,
            details={"mobile": scope.mask_mobile(number)},
        )
    except (ValidationError, Conflict) as exc:
        db.session.rollback()
        flash(str(exc.message), "error")
    else:
        db.session.commit()
        flash(
            _("The reply was received: %(outcome)s", outcome=replies.outcome_label(reply.outcome)),
            "success",
        )
    return redirect(url_for("simulator.phone", mobile=number))
