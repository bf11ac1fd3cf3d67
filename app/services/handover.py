"""Customer handover (R-31, Art 23) and the deactivation guard (R-13).

Two steps. Before changing post a user *transfers* customers to their superior: the
customers get manager = superior and ``awaiting_assignment`` = True. The superior then
*assigns* them from their "to assign" list to an active user of the same unit. Each
step is one ``Handover`` row, one ``CustomerEvent`` per customer moved (written with
one INSERT ... SELECT, so a step moving 50,000 customers is two statements) and one
audit row. The selection is either explicit ids or "all matching this filter"; the
latter is evaluated by the same query as the list page (``customers.filtered_query``).

The caller commits. A failed check raises before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import gettext as _
from sqlalchemy import Select, func, insert, literal, select, update

from app.extensions import db
from app.models import Customer, CustomerEvent, Handover, User
from app.services import audit
from app.services.customers import CustomerFilters, filtered_query
from app.services.errors import Conflict, NotFound, PermissionDenied, ValidationError
from app.timeutil import utcnow

NOTE_MAX = 400


def my_customers_query(user: User, filters: CustomerFilters, *, columns=None) -> Select:
    """Customers the user serves (not those waiting for the user to assign them)."""
    return filtered_query(user, filters, columns=columns).where(
        Customer.manager_id == user.id, Customer.awaiting_assignment.is_(False)
    )


def to_assign_query(user: User, filters: CustomerFilters, *, columns=None) -> Select:
    """Customers handed over to the user and waiting for assignment."""
    return filtered_query(user, filters, columns=columns).where(
        Customer.manager_id == user.id, Customer.awaiting_assignment.is_(True)
    )


def awaiting_count(user: User) -> int:
    """How many customers wait for the user to assign them (the nav badge)."""
    return db.session.execute(
        select(func.count(Customer.id)).where(
            Customer.manager_id == user.id, Customer.awaiting_assignment.is_(True)
        )
    ).scalar_one()


def _selection(base: Select, customer_ids, all_matching: bool) -> Select:
    """The ids to move: all of ``base``, or the given ids, each of which must be in ``base``."""
    if all_matching:
        return base
    try:
        ids = sorted({int(i) for i in (customer_ids or [])})
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            _("The selection holds something that is not a customer id.")
        ) from exc
    if not ids:
        raise ValidationError(
            _("Select at least one customer, or all customers matching the filter.")
        )
    chosen = base.where(Customer.id.in_(ids))
    found = db.session.execute(select(func.count()).select_from(chosen.subquery())).scalar_one()
    if found != len(ids):
        raise PermissionDenied(
            _(
                "%(n)s of the selected customers are not in your list; nothing was moved.",
                n=len(ids) - found,
            )
        )
    return chosen


def _move(
    *,
    kind: str,
    event_kind: str,
    actor: User,
    from_user: User,
    to_user: User,
    selection: Select,
    awaiting: bool,
    note: str,
    expected_count: int | None,
    details: dict,
) -> Handover:
    """Lock and count the selection, then write the handover, its events and the update."""
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise ValidationError(_("The note is too long (at most %(n)s characters).", n=NOTE_MAX))
    ids = selection.with_only_columns(Customer.id).order_by(None).correlate(None)
    # FOR UPDATE (PostgreSQL; SQLite serialises writers anyway): the customers cannot change
    # manager under us between the count, the events and the update.
    count = db.session.execute(
        select(func.count()).select_from(ids.with_for_update().subquery())
    ).scalar_one()
    if count == 0:
        raise ValidationError(_("No customers match the selection; nothing was moved."))
    if expected_count is not None and count != expected_count:
        raise Conflict(
            _(
                "The selection now holds %(n)s customers instead of %(expected)s. Review it again.",
                n=count,
                expected=expected_count,
            )
        )
    now = utcnow()
    handover = Handover(
        kind=kind,
        from_user_id=from_user.id,
        to_user_id=to_user.id,
        actor_id=actor.id,
        customer_count=count,
        note=note,
        at=now,
    )
    db.session.add(handover)
    db.session.flush()
    db.session.execute(
        insert(CustomerEvent).from_select(
            [
                "customer_id",
                "kind",
                "old_value",
                "new_value",
                "actor_id",
                "handover_id",
                "note",
                "at",
            ],
            select(
                Customer.id,
                literal(event_kind),
                literal(from_user.username),
                literal(to_user.username),
                literal(actor.id),
                literal(handover.id),
                literal(note),
                literal(now),
            ).where(Customer.id.in_(ids)),
        )
    )
    moved = select(CustomerEvent.customer_id).where(CustomerEvent.handover_id == handover.id)
    db.session.execute(
        update(Customer)
        .where(Customer.id.in_(moved))
        .values(manager_id=to_user.id, awaiting_assignment=awaiting)
        .execution_options(synchronize_session=False)
    )
    db.session.expire_all()
    audit.record(
        f"customer.{event_kind}",
        actor=actor,
        target=handover,
        details={
            "from": from_user.username,
            "to": to_user.username,
            "customers": count,
            "note": note,
            **details,
        },
    )
    return handover


def _selection_details(customer_ids, filters: CustomerFilters | None, all_matching: bool) -> dict:
    if all_matching:
        return {"selection": "all_matching", "filters": (filters or CustomerFilters()).to_args()}
    return {"selection": "ids"}


def _superior(actor: User) -> User:
    """The user customers are transferred to; ``ValidationError`` when there is none."""
    superior = actor.superior
    if superior is None:
        raise ValidationError(
            _(
                "You have no superior user to hand customers over to. Ask the "
                "Market Business Dept to record your superior."
            )
        )
    if not superior.active:
        raise ValidationError(
            _(
                "Your superior %(name)s is deactivated. Ask the Market Business "
                "Dept to record your new superior.",
                name=superior.display_name,
            )
        )
    return superior


def transfer_to_superior(
    actor: User,
    *,
    customer_ids=None,
    filters: CustomerFilters | None = None,
    all_matching: bool = False,
    expected_count: int | None = None,
    note: str = "",
) -> Handover:
    """Step 1: move the actor's selected customers to the actor's superior.

    Fails with ``ValidationError`` when the actor has no (active) superior or nothing is
    selected, ``PermissionDenied`` when a selected customer is not the actor's, ``Conflict``
    when "all matching" no longer holds ``expected_count`` customers.
    """
    if not actor.can("customer.handover"):
        raise PermissionDenied()
    superior = _superior(actor)
    filters = filters or CustomerFilters()
    selection = _selection(my_customers_query(actor, filters), customer_ids, all_matching)
    return _move(
        kind="transfer",
        event_kind="handed_over",
        actor=actor,
        from_user=actor,
        to_user=superior,
        selection=selection,
        awaiting=True,
        note=note,
        expected_count=expected_count,
        details=_selection_details(customer_ids, filters, all_matching),
    )


def may_transfer_for(actor: User, departing: User) -> bool:
    """Whether ``actor`` may hand ``departing``'s customers over in their place: their
    superior, or the Market admin who executes a deregistration (admin.users)."""
    if actor.id == departing.id:
        return False
    return actor.can("admin.users") or (
        departing.superior_id == actor.id and actor.can("customer.assign")
    )


def transfer_for_departing(actor: User, departing_user_id: int, *, note: str = "") -> Handover:
    """Step 1 done in the departing user's place (R-13, R-31): every customer the user still
    serves, including those waiting for them to assign, goes to the user's superior, who
    then assigns them. For a user who changed post without handing over first.

    Fails with ``NotFound`` (no such user), ``PermissionDenied`` (the actor is neither the
    superior nor the Market admin), ``ValidationError`` (no active superior, no customers,
    or no note saying why the user could not do it themselves).
    """
    departing = db.session.get(User, departing_user_id)
    if departing is None:
        raise NotFound()
    if not may_transfer_for(actor, departing):
        raise PermissionDenied()
    if not (note or "").strip():
        raise ValidationError(_("Say why the handover is made in the user's place."))
    superior = departing.superior
    if superior is None or not superior.active:
        raise ValidationError(
            _(
                "%(name)s has no active superior. Record the superior first.",
                name=departing.display_name,
            )
        )
    selection = select(Customer).where(Customer.manager_id == departing.id)
    return _move(
        kind="transfer",
        event_kind="handed_over",
        actor=actor,
        from_user=departing,
        to_user=superior,
        selection=selection,
        awaiting=True,
        note=note,
        expected_count=None,
        details={"selection": "all_of_user", "in_place_of": departing.username},
    )


@dataclass(frozen=True)
class TransferPreview:
    """What a transfer would do: shown on the confirmation page before anything moves."""

    superior: User
    count: int
    sample: list[Customer]


def preview_transfer(
    actor: User,
    *,
    customer_ids=None,
    filters: CustomerFilters | None = None,
    all_matching: bool = False,
    sample: int = 20,
) -> TransferPreview:
    """Run every check of ``transfer_to_superior`` without writing; same errors."""
    if not actor.can("customer.handover"):
        raise PermissionDenied()
    superior = _superior(actor)
    selection = _selection(
        my_customers_query(actor, filters or CustomerFilters()), customer_ids, all_matching
    )
    count = db.session.execute(
        select(func.count()).select_from(selection.order_by(None).subquery())
    ).scalar_one()
    if count == 0:
        raise ValidationError(_("No customers match the selection; nothing was moved."))
    rows = db.session.execute(selection.order_by(Customer.crm_id).limit(sample)).scalars().all()
    return TransferPreview(superior=superior, count=count, sample=list(rows))


def assignable_users(actor: User) -> list[User]:
    """Active users of the actor's unit, the people customers may be assigned to."""
    return list(
        db.session.execute(
            select(User)
            .where(User.unit_id == actor.unit_id, User.active.is_(True))
            .order_by(User.username)
        ).scalars()
    )


def assign(
    actor: User,
    to_user_id: int | None,
    *,
    customer_ids=None,
    filters: CustomerFilters | None = None,
    all_matching: bool = False,
    expected_count: int | None = None,
    note: str = "",
) -> Handover:
    """Step 2: the superior assigns customers waiting in their list to a user of the unit.

    Fails with ``ValidationError`` when the user is missing, inactive or of another unit
    (or a customer belongs to another branch than that user's unit), ``PermissionDenied``
    when a selected customer is not waiting in the actor's list, ``Conflict`` as above.
    """
    if not actor.can("customer.assign"):
        raise PermissionDenied()
    target = db.session.get(User, to_user_id) if to_user_id else None
    if target is None:
        raise ValidationError(_("Choose the user who will serve the customers."))
    if target.unit_id != actor.unit_id:
        raise ValidationError(
            _(
                "%(name)s belongs to another unit; customers are assigned within your unit.",
                name=target.display_name,
            )
        )
    if not target.active:
        raise ValidationError(
            _("%(name)s is deactivated and cannot serve customers.", name=target.display_name)
        )
    filters = filters or CustomerFilters()
    selection = _selection(to_assign_query(actor, filters), customer_ids, all_matching)
    elsewhere = db.session.execute(
        select(func.count()).select_from(
            selection.with_only_columns(Customer.id)
            .where(Customer.branch_id != target.unit_id)
            .subquery()
        )
    ).scalar_one()
    if elsewhere:
        # a customer is served by a staff user of its own branch.
        raise ValidationError(
            _(
                "%(n)s of the selected customers belong to another branch than %(name)s's unit.",
                n=elsewhere,
                name=target.display_name,
            )
        )
    return _move(
        kind="assign",
        event_kind="assigned",
        actor=actor,
        from_user=actor,
        to_user=target,
        selection=selection,
        awaiting=False,
        note=note,
        expected_count=expected_count,
        details=_selection_details(customer_ids, filters, all_matching),
    )


@dataclass(frozen=True)
class DeactivationCheck:
    """The answer of ``can_deactivate``: true only when the user serves no customer."""

    ok: bool
    customers: int
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def can_deactivate(user: User | int) -> DeactivationCheck:
    """May this account be deactivated (R-13)? No while any customer, active or closed,
    names the user as manager, including customers waiting for the user to assign them:
    they must be handed over first (R-31)."""
    user_id = user if isinstance(user, int) else user.id
    if db.session.get(User, user_id) is None:
        raise NotFound()
    n = db.session.execute(
        select(func.count(Customer.id)).where(Customer.manager_id == user_id)
    ).scalar_one()
    if n:
        return DeactivationCheck(
            False,
            n,
            _("The user still serves %(n)s customers; they must be handed over first.", n=n),
        )
    return DeactivationCheck(True, 0)
