"""THE consent service: the one state machine for customers' consent (R-30, R-32, R-35).

States: ``agreed`` (同意接收), ``refused`` (拒绝接收), ``undetermined`` (未确定).
Channels: ``sms_reply`` (the customer's reply, Art 25(3), 26(2), 27(3)), ``call_centre``
(opt-out by phone, Art 25), ``branch_staff`` (opt-out, or consent confirmed by other
means, Art 26(2)2), ``system`` (corrections by the system itself).

Every other area changes consent through this module only. Each change writes one
immutable ``ConsentEvent`` (old, new, channel, actor, evidence, time) and one audit row
in the caller's transaction; the caller commits. Nothing updates or deletes a consent
event (the database triggers of migration 0002 refuse it).

Transitions:
- to ``refused``: from any channel, evidence optional (an opt-out must stay easy);
- to ``agreed``: by the customer's reply (the reply text is the evidence) or by branch
  staff with evidence of the consent obtained by other means; never by the call centre,
  which only takes opt-outs;
- to ``undetermined``: by the system only, with a reason (R-35: silence keeps a customer
  undetermined, nobody "un-decides" one by hand);
- to the same state: refused as a no-op (``Conflict``).
"""

from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy import insert, literal, select, text, update

from app.extensions import db
from app.models import ConsentEvent, Customer, User
from app.models.customers import CONSENT_CHANNELS, CONSENT_STATES
from app.services import audit, scope
from app.services.customers import normalize_mobile
from app.services.errors import Conflict, NotFound, PermissionDenied, ValidationError
from app.timeutil import utcnow

EVIDENCE_MAX = 2000

# Which channel may move a customer to which state.
ALLOWED = {
    "sms_reply": {"agreed", "refused"},
    "call_centre": {"refused"},
    "branch_staff": {"agreed", "refused"},
    "system": {"agreed", "refused", "undetermined"},
}
# The permission a user acting through a channel must hold.
CHANNEL_PERMISSION = {"call_centre": "customer.opt_out", "branch_staff": "customer.consent_update"}


def _check_request(new_state: str, channel: str, actor: User | None, evidence: str) -> str:
    """Validate a requested change that does not depend on the customer; returns evidence."""
    if new_state not in CONSENT_STATES:
        raise ValidationError(_("Unknown consent state: %(value)s", value=new_state))
    if channel not in CONSENT_CHANNELS:
        raise ValidationError(_("Unknown consent channel: %(value)s", value=channel))
    evidence = (evidence or "").strip()
    if len(evidence) > EVIDENCE_MAX:
        raise ValidationError(
            _("The evidence is too long (at most %(n)s characters).", n=EVIDENCE_MAX)
        )
    if new_state not in ALLOWED[channel]:
        raise ValidationError(
            _(
                "The channel %(channel)s cannot set consent to %(state)s.",
                channel=channel,
                state=new_state,
            )
        )
    needed = CHANNEL_PERMISSION.get(channel)
    if needed:
        if actor is None:
            raise PermissionDenied(
                _("A consent change by %(channel)s needs the user who made it.", channel=channel)
            )
        if not actor.can(needed):
            raise PermissionDenied()
    if channel == "sms_reply" and not evidence:
        raise ValidationError(_("A consent change by SMS reply needs the reply text as evidence."))
    if channel == "branch_staff" and new_state == "agreed" and not evidence:
        # Art 26(2)2: staff may only record a consent they obtained by other means, and say how.
        raise ValidationError(
            _(
                "Say how the customer's consent was obtained (for example the "
                "signed form or the recorded call): evidence is required."
            )
        )
    if channel == "system" and not evidence:
        raise ValidationError(_("A system consent change needs a reason."))
    return evidence


def _record(
    customer: Customer, old: str, new: str, channel: str, actor: User | None, evidence: str, at
) -> ConsentEvent:
    event = ConsentEvent(
        customer_id=customer.id,
        old_state=old,
        new_state=new,
        channel=channel,
        actor_id=actor.id if actor is not None else None,
        evidence=evidence,
        at=at,
    )
    db.session.add(event)
    db.session.flush()
    audit.record(
        "customer.consent_changed",
        actor=actor,
        target=customer,
        details={
            "old": old,
            "new": new,
            "channel": channel,
            "evidence": evidence,
            "consent_event": event.id,
        },
    )
    return event


def change_consent(
    customer_id: int, new_state: str, *, channel: str, actor: User | None, evidence: str = ""
) -> ConsentEvent:
    """Move one customer to ``new_state``; returns the consent event. The caller commits.

    Fails with ``ValidationError`` (unknown state or channel, a transition the channel may
    not make, missing evidence), ``PermissionDenied`` (the actor lacks the channel's
    permission), ``NotFound`` / ``NotInScope`` (no such customer, or another branch's), and
    ``Conflict`` when the customer is already in ``new_state``. Nothing is written then.
    """
    evidence = _check_request(new_state, channel, actor, evidence)
    customer = db.session.execute(
        select(Customer).where(Customer.id == customer_id).with_for_update()
    ).scalar_one_or_none()
    if customer is None:
        raise NotFound(_("There is no such customer."))
    if actor is not None:
        scope.check_unit(actor, customer.branch_id)
    old = customer.consent
    if old == new_state:
        raise Conflict(
            _("The customer's consent is already “%(state)s”.", state=state_label(new_state))
        )
    now = utcnow()
    customer.consent = new_state
    customer.consent_changed_at = now
    return _record(customer, old, new_state, channel, actor, evidence, now)


def agree_by_reply(customer_id: int, *, evidence: str) -> ConsentEvent | None:
    """The customer replied 'Y' / 同意 (R-34): agreed, the reply text as evidence.

    Returns None, writing nothing, when the customer has agreed already (a repeated reply
    or a redelivered webhook is not an error). Other failures as ``change_consent``.
    """
    customer = db.session.get(Customer, customer_id)
    if customer is not None and customer.consent == "agreed":
        return None
    return change_consent(customer_id, "agreed", channel="sms_reply", actor=None, evidence=evidence)


def refuse_by_mobile(
    mobile: str, *, channel: str, evidence: str = "", actor: User | None = None
) -> int:
    """Set every customer with this mobile to refused, set-based (R-34: a refusal from a
    number applies to every customer with that number). Returns how many changed.

    Customers already refused are left alone (0 is a valid answer, not an error). With an
    ``actor``, only customers in the actor's scope are touched. One consent event per
    customer changed and one audit row for the whole refusal; the caller commits.
    """
    evidence = _check_request("refused", channel, actor, evidence)
    number = normalize_mobile(mobile)
    if not number:
        raise ValidationError(_("A mobile number is required."))
    now = utcnow()
    actor_id = actor.id if actor is not None else None
    unit_ids = scope.visible_unit_ids(actor) if actor is not None else None
    if db.session.get_bind().dialect.name == "postgresql":
        ids = _refuse_pg(number, channel, evidence, actor_id, unit_ids, now)
    else:
        ids = _refuse_portable(number, channel, evidence, actor_id, unit_ids, now)
    if ids:
        audit.record(
            "customer.consent_refused_by_mobile",
            actor=actor,
            target_type="customers",
            target_id=",".join(str(i) for i in ids[:50]),
            details={
                "mobile": scope.mask_mobile(number),
                "channel": channel,
                "evidence": evidence,
                "customers": len(ids),
            },
        )
    return len(ids)


def _refuse_pg(number, channel, evidence, actor_id, unit_ids, now) -> list[int]:
    """One statement: lock, update and write the events together, so a customer added or
    changed by a concurrent transaction is either fully in or fully out."""
    scope_sql = "AND branch_id = ANY(:units)" if unit_ids is not None else ""
    rows = (
        db.session.execute(
            text(f"""
        WITH target AS (
            SELECT id, consent FROM customers
            WHERE mobile = :mobile AND consent <> 'refused' {scope_sql}
            FOR UPDATE
        ), changed AS (
            UPDATE customers c SET consent = 'refused', consent_changed_at = :now
            FROM target WHERE c.id = target.id
            RETURNING c.id, target.consent AS old_state
        )
        INSERT INTO consent_events (customer_id, old_state, new_state, channel, actor_id,
                                    evidence, at)
        SELECT id, old_state, 'refused', :channel, :actor, :evidence, :now FROM changed
        RETURNING customer_id
    """),
            {
                "mobile": number,
                "now": now,
                "channel": channel,
                "actor": actor_id,
                "evidence": evidence,
                "units": list(unit_ids or []),
            },
        )
        .scalars()
        .all()
    )
    db.session.expire_all()  # customers loaded in this session now hold a stale consent
    return sorted(rows)


def _refuse_portable(number, channel, evidence, actor_id, unit_ids, now) -> list[int]:
    """SQLite: the INSERT takes the database's write lock, so the set it read cannot change
    before the SELECT and UPDATE that follow it in this transaction."""
    cond = [Customer.mobile == number, Customer.consent != "refused"]
    if unit_ids is not None:
        cond.append(Customer.branch_id.in_(unit_ids))
    db.session.execute(
        insert(ConsentEvent).from_select(
            ["customer_id", "old_state", "new_state", "channel", "actor_id", "evidence", "at"],
            select(
                Customer.id,
                Customer.consent,
                literal("refused"),
                literal(channel),
                literal(actor_id),
                literal(evidence),
                literal(now),
            ).where(*cond),
        )
    )
    ids = db.session.execute(select(Customer.id).where(*cond)).scalars().all()
    db.session.execute(
        update(Customer)
        .where(Customer.id.in_(ids))
        .values(consent="refused", consent_changed_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.expire_all()
    return sorted(ids)


def state_label(state: str) -> str:
    """The state as people read it (同意接收 / 拒绝接收 / 未确定 in Chinese)."""
    return {"agreed": _("Agreed"), "refused": _("Refused"), "undetermined": _("Undetermined")}.get(
        state, state
    )


def channel_label(channel: str) -> str:
    """The channel as people read it."""
    return {
        "sms_reply": _("SMS reply"),
        "call_centre": _("Call centre"),
        "branch_staff": _("Branch staff"),
        "system": _("System"),
    }.get(channel, channel)
