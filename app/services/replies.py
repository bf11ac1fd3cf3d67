"""Customers' replies (R-34, Art 25(3), 26(2), 27(3)) and the branches' reply inbox.

A reply is matched after trimming, case-folding and full-width -> half-width folding
(NFKC), and after dropping quotes and closing punctuation around it (the inquiry asks
for 回复'Y', and people type the quotes):

- ``Y`` / 同意 -> agreed, applied when exactly one customer has the number;
- ``N`` / 不需要 / 退订 / ``TD`` / ``T`` / ``R`` / ``STOP`` -> refused, applied to every
  customer with the number (the consent service does it set-based);
- anything else, a number no customer has, and an agreement from a number several
  customers share land in the reply inbox of the branch concerned (unknown numbers: the
  Market dept's, which sees every unit), handled daily (Art 26(2)3).

Every reply is stored once (``dedupe_key``: the gateway's id for it), so a webhook
delivered twice changes nothing the second time. Consent changes go through
``app.services.consent`` with the reply as evidence.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from dataclasses import dataclass

from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import Customer, InboundReply, Recipient, ReplyNote, User
from app.services import audit, consent, scope
from app.services.customers import normalize_mobile
from app.services.errors import Conflict, NotFound, ValidationError
from app.timeutil import utcnow

log = logging.getLogger(__name__)

AGREE_WORDS = frozenset({"y", "同意"})
REFUSE_WORDS = frozenset({"n", "不需要", "退订", "td", "t", "r", "stop"})
_STRIP = " \t\r\n'\"‘’“”`.。!！,，;；~～、"
TEXT_MAX = 10_000  # longer replies are kept up to here, the rest cut (and said so)
EVIDENCE_TEXT_MAX = 1_500  # the consent service keeps evidence up to 2,000 characters
NOTE_MAX = 2_000


def normalize_reply(text: str | None) -> str:
    """The reply as matched: NFKC (full-width -> half-width), trimmed, case-folded."""
    folded = unicodedata.normalize("NFKC", text or "").strip(_STRIP)
    return folded.casefold()


def parse_reply(text: str | None) -> str:
    """``agree``, ``refuse`` or ``other``."""
    word = normalize_reply(text)
    if word in AGREE_WORDS:
        return "agree"
    if word in REFUSE_WORDS:
        return "refuse"
    return "other"


def dedupe_key(
    gateway: str, external_id: str | None, mobile: str, text: str, received: str = ""
) -> str:
    """The reply's identity: the gateway's own id when it gives one, else a hash."""
    if external_id:
        return f"{gateway}:{external_id}"[:120]
    digest = hashlib.sha256(f"{mobile}\x00{text}\x00{received}".encode()).hexdigest()
    return f"{gateway}:h:{digest}"


def _evidence(reply: InboundReply) -> str:
    text = (
        reply.text if len(reply.text) <= EVIDENCE_TEXT_MAX else reply.text[:EVIDENCE_TEXT_MAX] + "…"
    )
    return f"SMS reply #{reply.id} from {scope.mask_mobile(reply.mobile)}: {text}"


@dataclass(frozen=True)
class Match:
    customer_ids: list[int]
    unit_id: int | None
    message_id: int | None


def _match(mobile: str) -> Match:
    """The customers with this number, the branch whose inbox it belongs to, and the last
    message we sent to one of them (what the customer is most likely answering)."""
    customers = db.session.execute(
        select(Customer.id, Customer.branch_id)
        .where(Customer.mobile == mobile)
        .order_by(Customer.id)
    ).all()
    if not customers:
        return Match([], None, None)
    ids = [c.id for c in customers]
    last = db.session.execute(
        select(Recipient.message_id, Recipient.unit_id)
        .where(Recipient.customer_id.in_(ids[:100]), Recipient.status != "suppressed")
        .order_by(Recipient.created_at.desc(), Recipient.id.desc())
        .limit(1)
    ).first()
    unit_id = (last.unit_id if last and last.unit_id else None) or customers[0].branch_id
    return Match(ids, unit_id, last.message_id if last else None)


def receive(
    *,
    gateway: str,
    mobile: str,
    text: str,
    to_number: str = "",
    external_id: str | None = None,
    received: str = "",
) -> tuple[InboundReply, bool]:
    """Store and act on one reply; returns (reply, created). The caller commits.

    A reply already received (same dedupe key) is returned unchanged with created False.
    ``ValidationError`` when there is no sender number.
    """
    raw_mobile = (mobile or "").strip()
    number = normalize_mobile(raw_mobile)
    if not number:
        raise ValidationError(_("A reply needs the sender's number."))
    text = text or ""
    if len(text) > TEXT_MAX:
        log.warning(
            "reply from %s cut from %d to %d characters",
            scope.mask_mobile(number),
            len(text),
            TEXT_MAX,
        )
        text = text[:TEXT_MAX]
    key = dedupe_key(gateway, external_id, number, text, received)
    existing = db.session.execute(
        select(InboundReply).where(InboundReply.dedupe_key == key)
    ).scalar()
    if existing is not None:
        return existing, False

    intent = parse_reply(text)
    match = _match(number)
    values = dict(
        dedupe_key=key,
        gateway=gateway[:12],
        mobile=number[:32],
        to_number=(to_number or "")[:32],
        text=text,
        intent=intent,
        status="open",
        outcome="",
        unit_id=match.unit_id,
        customer_id=match.customer_ids[0] if len(match.customer_ids) == 1 else None,
        customers_matched=len(match.customer_ids),
        message_id=match.message_id,
        received_at=utcnow(),
    )
    dialect = db.session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    inserted = (
        db.session.execute(
            module.insert(InboundReply)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(InboundReply.id)
        ).first()
        is not None
    )
    reply = db.session.execute(
        select(InboundReply).where(InboundReply.dedupe_key == key)
    ).scalar_one()
    if not inserted:  # a concurrent delivery of the same reply won
        return reply, False

    if intent == "refuse" and match.customer_ids:
        changed = consent.refuse_by_mobile(number, channel="sms_reply", evidence=_evidence(reply))
        reply.status = "auto"
        reply.outcome = f"refused:{changed}"
    elif intent == "agree" and len(match.customer_ids) == 1:
        event = consent.agree_by_reply(match.customer_ids[0], evidence=_evidence(reply))
        reply.status = "auto"
        reply.outcome = "agreed" if event is not None else "agreed_already"
    else:
        reply.outcome = (
            "unknown_number"
            if not match.customer_ids
            else "shared_number"
            if intent == "agree"
            else "needs_person"
        )
    db.session.flush()
    audit.record(
        "reply.received",
        actor=None,
        target=reply,
        details={
            "gateway": gateway,
            "mobile": scope.mask_mobile(number),
            "intent": intent,
            "status": reply.status,
            "outcome": reply.outcome,
            "customers": len(match.customer_ids),
        },
    )
    return reply, True


def outcome_label(outcome: str) -> str:
    """What was done with a reply, as people read it (stored as a short code)."""
    code, _sep, value = (outcome or "").partition(":")
    labels = {
        "refused": _("Refused: %(n)s customer(s) changed", n=value or 0),
        "agreed": _("Agreed"),
        "agreed_already": _("Had agreed already"),
        "agreed_for": _("Agreed for customer #%(id)s", id=value),
        "unknown_number": _("No customer has this number"),
        "shared_number": _("Several customers share this number: choose who agreed"),
        "needs_person": _("Needs a person"),
        "handled": _("Handled, no change"),
    }
    return labels.get(code, outcome or "")


# ------------------------------------------------------------------ the reply inbox


def inbox_query(user: User, *, status: str = "open"):
    """Replies the user may see, newest first: their units' replies; unknown numbers
    (no unit) only for users who see every unit."""
    query = select(InboundReply)
    if status in ("open", "handled", "auto"):
        query = query.where(InboundReply.status == status)
    ids = scope.visible_unit_ids(user)
    if ids is not None:
        query = query.where(InboundReply.unit_id.in_(ids))
    return query.order_by(InboundReply.received_at.desc(), InboundReply.id.desc())


def open_count(user: User) -> int:
    query = select(func.count()).select_from(InboundReply).where(InboundReply.status == "open")
    ids = scope.visible_unit_ids(user)
    if ids is not None:
        query = query.where(InboundReply.unit_id.in_(ids))
    return db.session.execute(query).scalar_one()


def get_reply(user: User, reply_id: int, *, for_update: bool = False) -> InboundReply:
    """One reply in the user's scope, else ``NotFound`` / ``NotInScope``."""
    query = select(InboundReply).where(InboundReply.id == reply_id)
    if for_update:
        query = query.with_for_update()
    reply = db.session.execute(query).scalar_one_or_none()
    if reply is None:
        raise NotFound(_("There is no such reply."))
    if reply.unit_id is None:
        if not scope.sees_all_units(user):
            raise NotFound(_("There is no such reply."))
    else:
        scope.check_unit(user, reply.unit_id)
    return reply


def customers_for(user: User, reply: InboundReply) -> list[Customer]:
    """The customers with the reply's number that the user may see."""
    query = scope.restrict(
        select(Customer).where(Customer.mobile == reply.mobile), Customer.branch_id, user
    )
    return list(db.session.execute(query.order_by(Customer.id).limit(50)).scalars())


def _close(reply: InboundReply, user: User, outcome: str) -> None:
    reply.status = "handled"
    reply.handled_by_id = user.id
    reply.handled_at = utcnow()
    reply.outcome = outcome[:200]


def mark_handled(user: User, reply_id: int) -> InboundReply:
    """Close a reply without a consent change. ``Conflict`` if it is closed already."""
    reply = get_reply(user, reply_id, for_update=True)
    if reply.status != "open":
        raise Conflict(_("This reply has been dealt with already."))
    _close(reply, user, "handled")
    audit.record("reply.handled", actor=user, target=reply, details={"action": "none"})
    return reply


def set_consent(
    user: User, reply_id: int, *, state: str, customer_id: int | None = None
) -> InboundReply:
    """Set consent from a reply (Art 26(2)): ``agreed`` for the one customer chosen (a
    shared number needs the choice), ``refused`` for every customer with the number in
    the user's scope (R-34). The reply is the evidence; the reply is closed.
    """
    reply = get_reply(user, reply_id, for_update=True)
    if reply.status != "open":
        raise Conflict(_("This reply has been dealt with already."))
    evidence = _evidence(reply)
    if state == "agreed":
        candidates = {c.id for c in customers_for(user, reply)}
        if customer_id is None and len(candidates) == 1:
            customer_id = next(iter(candidates))
        if customer_id not in candidates:
            raise ValidationError(_("Choose the customer who agreed."))
        consent.change_consent(
            customer_id, "agreed", channel="sms_reply", actor=user, evidence=evidence
        )
        outcome = f"agreed_for:{customer_id}"
    elif state == "refused":
        changed = consent.refuse_by_mobile(
            reply.mobile, channel="sms_reply", actor=user, evidence=evidence
        )
        outcome = f"refused:{changed}"
    else:
        raise ValidationError(_("Choose agreed or refused."))
    _close(reply, user, outcome)
    audit.record(
        "reply.handled",
        actor=user,
        target=reply,
        details={"action": state, "customer": customer_id, "outcome": outcome},
    )
    return reply


def add_note(user: User, reply_id: int, text: str) -> ReplyNote:
    """A note on a reply (what was done, whom the branch called); the reply stays as it is."""
    reply = get_reply(user, reply_id)
    text = (text or "").strip()
    if not text:
        raise ValidationError(_("Write the note first."))
    if len(text) > NOTE_MAX:
        raise ValidationError(_("A note has at most %(n)s characters.", n=NOTE_MAX))
    note = ReplyNote(reply_id=reply.id, author_id=user.id, text=text, at=utcnow())
    db.session.add(note)
    db.session.flush()
    audit.record("reply.noted", actor=user, target=reply, details={"note": note.id})
    return note
