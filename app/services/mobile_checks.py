"""The branch's mobile verification list (R-23, Art 24).

The CRM import flags invalid or doubtful numbers by adding an open ``MobileCheck``;
branch staff verify the number with the customer (or the CRM) and mark the check done
with a note. Marking writes a ``mobile_checked`` customer event and an audit row; the
caller commits.
"""

from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy import Select, func, select
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import CustomerEvent, MobileCheck, User
from app.services import audit, scope
from app.services.errors import Conflict, NotFound, ValidationError
from app.timeutil import utcnow

NOTE_MAX = 400


def open_checks_query(user: User, branch_id: int | None = None) -> Select:
    """Open checks in the user's scope (optionally of one branch), oldest first."""
    query = scope.restrict(
        select(MobileCheck).where(MobileCheck.status == "open"), MobileCheck.branch_id, user
    )
    if branch_id is not None:
        scope.check_unit(user, branch_id)
        query = query.where(MobileCheck.branch_id == branch_id)
    return query.options(selectinload(MobileCheck.customer)).order_by(
        MobileCheck.created_at, MobileCheck.id
    )


def open_count(user: User) -> int:
    """How many open checks the user's scope holds (the nav badge)."""
    query = scope.restrict(
        select(func.count(MobileCheck.id)).where(MobileCheck.status == "open"),
        MobileCheck.branch_id,
        user,
    )
    return db.session.execute(query).scalar_one()


def get_check(user: User, check_id: int) -> MobileCheck:
    check = db.session.get(MobileCheck, check_id)
    if check is None:
        raise NotFound()
    scope.check_unit(user, check.branch_id)
    return check


def mark_checked(check_id: int, *, actor: User, note: str) -> MobileCheck:
    """Close an open check with what was verified. ``ValidationError`` without a note,
    ``Conflict`` when someone has closed it already, 404 outside the actor's scope."""
    note = (note or "").strip()
    if not note:
        raise ValidationError(
            _(
                "Say what you verified (for example: confirmed with the "
                "customer by phone, corrected in the CRM)."
            )
        )
    if len(note) > NOTE_MAX:
        raise ValidationError(_("The note is too long (at most %(n)s characters).", n=NOTE_MAX))
    check = db.session.execute(
        select(MobileCheck).where(MobileCheck.id == check_id).with_for_update()
    ).scalar_one_or_none()
    if check is None:
        raise NotFound()
    scope.check_unit(actor, check.branch_id)
    if check.status != "open":
        raise Conflict(_("This number was marked checked already."))
    now = utcnow()
    check.status = "checked"
    check.note = note
    check.checked_by_id = actor.id
    check.checked_at = now
    db.session.add(
        CustomerEvent(
            customer_id=check.customer_id,
            kind="mobile_checked",
            old_value=check.mobile,
            new_value=check.reason,
            actor_id=actor.id,
            note=note,
            at=now,
        )
    )
    db.session.flush()
    audit.record(
        "customer.mobile_checked",
        actor=actor,
        target=check,
        details={"customer": check.customer_id, "reason": check.reason, "note": note},
    )
    return check
