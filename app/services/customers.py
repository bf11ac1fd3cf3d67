"""Customer search, detail and history (R-03, R-24; issue 3 item 3).

The search is the one place that turns what a user typed and picked into a query, so
the customer list, "my customers", the handover's "all matching this filter" and the
benchmark all select exactly the same customers. Every query goes through
``scope.restrict``: branch users see their own branch only (R-03).

Search terms (one box):
- 11 digits (spaces, dashes and a +86 prefix allowed): the full mobile;
- 4 digits: the last four digits of the mobile;
- anything else: a CRM id prefix, or part of the name. Names are matched anywhere from
  three characters on; a two-character term matches the start or the end of the name
  (Chinese names are two to four characters: the surname or the given name) and one
  character the start (the surname). Those shapes are what the trigram index serves, so
  the search stays fast at 1,000,000 customers.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy import Select, Text, cast, exists, func, literal_column, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import array as pg_array
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import (
    ConsentEvent,
    Customer,
    CustomerEvent,
    CustomerTag,
    SharedMobile,
    SharedMobileState,
    Unit,
    User,
)
from app.models.customers import CONSENT_STATES, RISK_LEVELS
from app.services import scope
from app.services.errors import NotFound, ValidationError
from app.timeutil import utcnow

# Counting stops here: an exact count of a million rows costs more than it tells anyone,
# and "more than 1,000 match" tells the user to narrow the search just as well.
COUNT_CAP = 1_000
STATUSES = ("active", "closed")
_LIKE_ESCAPE = "\\"


# A Chinese mobile in its 11-digit national form (after ``normalize_mobile``).
MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")


def normalize_mobile(text: str | None) -> str:
    """The 11-digit national form of a Chinese mobile as people and carriers write it.

    Drops spaces, dashes and brackets and a leading +86 / 0086 / 86; returns what is
    left (possibly not 11 digits: the caller decides whether that is a mobile).
    """
    compact = re.sub(r"[\s\-()]", "", text or "")
    if compact.startswith("+"):
        compact = compact[1:]
    if compact.isdigit():
        for prefix in ("0086", "86"):
            if compact.startswith(prefix) and len(compact) == 11 + len(prefix):
                return compact[len(prefix) :]
    return compact


def _like_escape(text: str) -> str:
    return (
        text.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
        .replace("%", _LIKE_ESCAPE + "%")
        .replace("_", _LIKE_ESCAPE + "_")
    )


def term_condition(q: str):
    """The WHERE clause for the search box, or None for an empty term (see module doc)."""
    q = (q or "").strip()
    if not q:
        return None
    if len(q) > 100:
        raise ValidationError(_("The search term is too long (at most 100 characters)."))
    conditions = []
    mobile = normalize_mobile(q)
    if mobile.isdigit() and len(mobile) == 11:
        conditions.append(Customer.mobile == mobile)
    elif mobile.isdigit() and len(mobile) == 4:
        conditions.append(Customer.mobile_tail == mobile)
    if mobile != q:
        conditions.append(Customer.mobile == q)  # unparsed numbers are stored as the CRM sent them
    esc = _like_escape(q)
    conditions.append(Customer.crm_id.like(esc + "%", escape=_LIKE_ESCAPE))
    if q.upper() != q:
        conditions.append(Customer.crm_id.like(_like_escape(q.upper()) + "%", escape=_LIKE_ESCAPE))
    if not mobile.isdigit():  # names hold no digits
        if len(q) >= 3:
            conditions.append(Customer.name.ilike(f"%{esc}%", escape=_LIKE_ESCAPE))
        else:
            conditions.append(Customer.name.ilike(f"{esc}%", escape=_LIKE_ESCAPE))
            if len(q) == 2:
                conditions.append(Customer.name.ilike(f"%{esc}", escape=_LIKE_ESCAPE))
    return or_(*conditions)


def tag_condition(tag: str):
    """Customers holding ``tag`` (see ``tags_condition``)."""
    return tags_condition([tag])


def tags_condition(tags: list[str], table=None):
    """Customers (of ``table``, default ``customers``, or an alias of it) holding any of
    ``tags``. On PostgreSQL the ';'-joined ``tags`` column as an array, which a GIN index
    serves together with the branch index (a bitmap AND), so a tag within one branch stays
    fast at 1,000,000 customers, and which a scan of every customer tests without a join;
    elsewhere the ``customer_tags`` rows. The import keeps both alike."""
    t = Customer.__table__ if table is None else table
    if db.session.get_bind().dialect.name == "postgresql":
        # The separator is inlined (not a bound parameter) so the expression is the index's.
        as_array = func.string_to_array(t.c.tags, literal_column("';'"), type_=ARRAY(Text))
        wanted = cast(pg_array(list(tags)), ARRAY(Text))
        return as_array.contains(wanted) if len(tags) == 1 else as_array.overlap(wanted)
    held = CustomerTag.__table__.c
    return exists().where(held.customer_id == t.c.id, held.tag.in_(list(tags)))


@dataclass
class CustomerFilters:
    """What the user typed and picked on a customer list; ``from_args`` checks it."""

    q: str = ""
    branch_id: int | None = None
    consent: str = ""
    manager_id: int | None = None
    risk_level: str = ""
    tag: str = ""
    status: str = ""

    @classmethod
    def from_args(cls, args: Mapping) -> CustomerFilters:
        """Parse request arguments (or a form); unknown values are a ValidationError."""

        def _int(name: str) -> int | None:
            raw = (args.get(name) or "").strip()
            if not raw:
                return None
            if not raw.isdigit():
                raise ValidationError(_("The filter %(name)s must be a number.", name=name))
            return int(raw)

        f = cls(
            q=(args.get("q") or "").strip(),
            branch_id=_int("branch"),
            consent=(args.get("consent") or "").strip(),
            manager_id=_int("manager"),
            risk_level=(args.get("risk") or "").strip().upper(),
            tag=(args.get("tag") or "").strip(),
            status=(args.get("status") or "").strip(),
        )
        if f.consent and f.consent not in CONSENT_STATES:
            raise ValidationError(_("Unknown consent state: %(value)s", value=f.consent))
        if f.risk_level and f.risk_level not in RISK_LEVELS:
            raise ValidationError(_("Unknown risk level: %(value)s", value=f.risk_level))
        if f.status and f.status not in STATUSES:
            raise ValidationError(_("Unknown customer status: %(value)s", value=f.status))
        if len(f.tag) > 40:
            raise ValidationError(_("A tag has at most 40 characters."))
        return f

    def to_args(self) -> dict[str, str]:
        """The filters as URL arguments (for the pager, hidden form fields, hx-push-url)."""
        out = {
            "q": self.q,
            "branch": self.branch_id,
            "consent": self.consent,
            "manager": self.manager_id,
            "risk": self.risk_level,
            "tag": self.tag,
            "status": self.status,
        }
        return {k: str(v) for k, v in out.items() if v not in (None, "")}

    @property
    def empty(self) -> bool:
        return not self.to_args()


def filtered_query(user: User, filters: CustomerFilters, *, columns=None) -> Select:
    """A select of the customers in ``user``'s scope that match ``filters`` (no order).

    ``columns`` replaces the selected entity, e.g. ``Customer.id`` for set-based work.
    A branch filter outside the user's scope is ``NotInScope``.
    """
    query = select(*(columns if columns is not None else [Customer]))
    query = scope.restrict(query, Customer.branch_id, user)
    if filters.branch_id is not None:
        scope.check_unit(user, filters.branch_id)
        query = query.where(Customer.branch_id == filters.branch_id)
    condition = term_condition(filters.q)
    if condition is not None:
        query = query.where(condition)
    if filters.consent:
        query = query.where(Customer.consent == filters.consent)
    if filters.manager_id is not None:
        query = query.where(Customer.manager_id == filters.manager_id)
    if filters.risk_level:
        query = query.where(Customer.risk_level == filters.risk_level)
    if filters.tag:
        query = query.where(tag_condition(filters.tag))
    if filters.status:
        query = query.where(Customer.active.is_(filters.status == "active"))
    return query


@dataclass
class SearchPage:
    """One page of a customer list. ``capped`` means more than ``total`` customers match."""

    rows: list[Customer]
    total: int
    capped: bool
    page: int
    per_page: int
    filters: CustomerFilters = field(default_factory=CustomerFilters)

    @property
    def pages(self) -> int:
        return max((self.total + self.per_page - 1) // self.per_page, 1)


def count_capped(query: Select, cap: int | None = COUNT_CAP) -> tuple[int, bool]:
    """How many rows ``query`` selects, counting at most ``cap`` (None: exact)."""
    ids = query.with_only_columns(Customer.id).order_by(None)
    if cap is not None:
        ids = ids.limit(cap + 1)
    n = db.session.execute(select(func.count()).select_from(ids.subquery())).scalar_one()
    if cap is not None and n > cap:
        return cap, True
    return n, False


def paginate(
    query: Select,
    *,
    page: int = 1,
    per_page: int = 50,
    cap: int | None = COUNT_CAP,
    filters: CustomerFilters | None = None,
) -> SearchPage:
    """Count (capped) and fetch one page ordered by CRM id, with branch and manager loaded."""
    page = max(int(page or 1), 1)
    total, capped = count_capped(query, cap)
    last = max((total + per_page - 1) // per_page, 1)
    page = min(page, last)
    rows = (
        db.session.execute(
            query.options(selectinload(Customer.branch), selectinload(Customer.manager))
            .order_by(Customer.crm_id)
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
        .scalars()
        .all()
    )
    return SearchPage(
        rows=list(rows),
        total=total,
        capped=capped,
        page=page,
        per_page=per_page,
        filters=filters or CustomerFilters(),
    )


def search(
    user: User, filters: CustomerFilters, *, page: int = 1, per_page: int = 50
) -> SearchPage:
    """The customer list: customers in scope matching ``filters``, one page of them."""
    return paginate(filtered_query(user, filters), page=page, per_page=per_page, filters=filters)


def get_customer(user: User, customer_id: int) -> Customer:
    """A customer the user may see; ``NotFound`` / ``NotInScope`` (both 404) otherwise."""
    customer = db.session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(_("There is no such customer."))
    scope.check_unit(user, customer.branch_id)
    return customer


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a customer's history: a consent change or another customer event."""

    at: datetime
    kind: str  # "consent" or a CustomerEvent kind
    old_value: str
    new_value: str
    actor_name: str
    text: str  # the consent evidence or the event's note
    channel: str = ""
    handover_id: int | None = None
    old_display: str = ""  # user kinds: the display names of the usernames stored
    new_display: str = ""


USER_EVENT_KINDS = ("handed_over", "assigned", "manager_changed")


def timeline(customer_id: int, *, limit: int = 500) -> list[TimelineEntry]:
    """Consent events and customer events of one customer merged, newest first."""
    consent = db.session.execute(
        select(ConsentEvent)
        .options(selectinload(ConsentEvent.actor))
        .where(ConsentEvent.customer_id == customer_id)
        .order_by(ConsentEvent.at.desc(), ConsentEvent.id.desc())
        .limit(limit)
    ).scalars()
    events = db.session.execute(
        select(CustomerEvent)
        .options(selectinload(CustomerEvent.actor))
        .where(CustomerEvent.customer_id == customer_id)
        .order_by(CustomerEvent.at.desc(), CustomerEvent.id.desc())
        .limit(limit)
    ).scalars()

    def _name(actor) -> str:
        return actor.display_name if actor is not None else ""

    a = [
        TimelineEntry(
            at=e.at,
            kind="consent",
            old_value=e.old_state,
            new_value=e.new_state,
            actor_name=_name(e.actor),
            text=e.evidence,
            channel=e.channel,
        )
        for e in consent
    ]
    b = [
        TimelineEntry(
            at=e.at,
            kind=e.kind,
            old_value=e.old_value,
            new_value=e.new_value,
            actor_name=_name(e.actor),
            text=e.note,
            handover_id=e.handover_id,
        )
        for e in events
    ]
    usernames = {
        v for e in b if e.kind in USER_EVENT_KINDS for v in (e.old_value, e.new_value) if v
    }
    if usernames:
        names = dict(
            db.session.execute(
                select(User.username, User.display_name).where(User.username.in_(usernames))
            ).all()
        )
        b = [
            replace(
                e,
                old_display=names.get(e.old_value, e.old_value),
                new_display=names.get(e.new_value, e.new_value),
            )
            if e.kind in USER_EVENT_KINDS
            else e
            for e in b
        ]
    merged = heapq.merge(a, b, key=lambda entry: entry.at, reverse=True)
    return list(merged)[:limit]


def customers_by_mobile(user: User, mobile: str, *, limit: int = 100) -> list[Customer]:
    """Every customer in scope with this mobile (one number may belong to several)."""
    number = normalize_mobile(mobile)
    query = scope.restrict(
        select(Customer).where(Customer.mobile == number), Customer.branch_id, user
    )
    return list(
        db.session.execute(
            query.options(selectinload(Customer.branch), selectinload(Customer.manager))
            .order_by(Customer.crm_id)
            .limit(limit)
        ).scalars()
    )


def branches_in_scope(user: User) -> list[Unit]:
    """The branches a user may filter by (all for HQ viewers, else their own unit)."""
    query = select(Unit).where(Unit.kind == "branch").order_by(Unit.code)
    ids = scope.visible_unit_ids(user)
    if ids is not None:
        query = select(Unit).where(Unit.id.in_(ids)).order_by(Unit.code)
    return list(db.session.execute(query).scalars())


def staff_in_scope(user: User, branch_id: int | None = None) -> list[User]:
    """Active users who may serve customers in the user's scope (the staff filter)."""
    query = scope.restrict(select(User).where(User.active.is_(True)), User.unit_id, user)
    if branch_id is not None:
        query = query.where(User.unit_id == branch_id)
    else:
        query = query.join(Unit, Unit.id == User.unit_id).where(Unit.kind == "branch")
    return list(db.session.execute(query.order_by(User.unit_id, User.username)).scalars())


# ------------------------------------------------------------------ shared numbers


def recount_shared_mobiles() -> int:
    """Recount ``shared_mobiles``, the numbers more than one customer has, in one grouped
    read of the mobile index; returns how many. The CRM import, the only writer of
    customers' numbers, calls it before it commits; so do the demo and benchmark data.
    The caller commits."""
    c = Customer.__table__.c
    db.session.execute(SharedMobile.__table__.delete())
    db.session.execute(
        SharedMobile.__table__.insert().from_select(
            ["mobile"], select(c.mobile).group_by(c.mobile).having(func.count() > 1)
        )
    )
    state = db.session.get(SharedMobileState, 1) or SharedMobileState(id=1)
    state.max_customer_id = db.session.execute(select(func.max(c.id))).scalar() or 0
    state.recounted_at = utcnow()
    db.session.add(state)
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("ANALYZE shared_mobiles"))
    return db.session.execute(select(func.count()).select_from(SharedMobile)).scalar_one()


def shared_mobiles_current() -> bool:
    """True when ``shared_mobiles`` was counted with today's customers: no customer was
    added since (numbers change only through the import, which recounts)."""
    state = db.session.get(SharedMobileState, 1)
    if state is None:
        return False
    newest = db.session.execute(select(func.max(Customer.id))).scalar() or 0
    return state.max_customer_id == newest
