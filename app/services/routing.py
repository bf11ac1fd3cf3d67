"""Who approves a message, and under which policy article (R-42). Pure; tested article by article.

``route`` is the one decision: from the author's unit, the category and the author to the
approver group. The people in each group are looked up beforehand (``load_directory``)
and passed in, so the rule itself needs no database:

- Art 14: a Research message, and every advisory product issue, goes to the Research head(s);
- Art 9:  a branch's advisory message goes to Research's reviewers;
- Art 9:  any other branch message goes to the branch's head(s);
- Art 8:  an HQ department's message goes to that department's head(s).

An author never approves their own message: they are left out of the group. When that
leaves the group empty (the author is its only approver) the message goes to the Market
Business Dept head(s) instead, under the same article (Art 4: Market supervises the
system); if even that leaves no one, the route has no approvers and submission is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from app.extensions import db
from app.models import Unit, User
from app.services import org


@dataclass(frozen=True)
class UnitFacts:
    """What the route needs to know of the author's unit."""

    id: int
    kind: str  # hq | branch
    is_research: bool = False
    is_market: bool = False

    @classmethod
    def of(cls, unit: Unit) -> UnitFacts:
        return cls(unit.id, unit.kind, bool(unit.is_research), bool(unit.is_market))


@dataclass(frozen=True)
class Directory:
    """The approvers the route can choose from, by unit id."""

    heads: dict[int, tuple[int, ...]] = field(default_factory=dict)  # unit -> approvers
    research_reviewers: tuple[int, ...] = ()
    research_unit_id: int | None = None
    market_unit_id: int | None = None


@dataclass(frozen=True)
class Route:
    group: str  # unit_heads | research_reviewers | research_head | market_heads
    unit_id: int | None  # whose approvers / reviewers
    article: str  # "Art 8", "Art 9", "Art 14"
    approver_ids: tuple[int, ...]  # the group without the author
    fallback: bool = False  # the author was the group's only approver: Market heads decide

    @property
    def permission(self) -> str:
        """The permission a member of the group holds."""
        return (
            "message.review_advisory" if self.group == "research_reviewers" else "message.approve"
        )


GROUP_LABELS = {
    "unit_heads": _l("Head(s) of the author's unit"),
    "research_reviewers": _l("Research Dept reviewers"),
    "research_head": _l("Research Dept head(s)"),
    "market_heads": _l("Market Business Dept head(s)"),
}

# Why each article applies, as the message page explains it.
REASONS = {
    ("unit_heads", "Art 8"): _l(
        "An HQ department's message is approved by the department's head (Art 8)."
    ),
    ("unit_heads", "Art 9"): _l("A branch's message is approved by the branch head (Art 9)."),
    ("research_reviewers", "Art 9"): _l(
        "A branch's advisory content is reviewed by the Research Dept (Art 9)."
    ),
    ("research_head", "Art 14"): _l(
        "Research messages and advisory product issues are approved by the Research head (Art 14)."
    ),
}
FALLBACK_REASON = _l(
    "The author is the only approver of the group, and nobody approves their own message: it goes to the Market Business Dept head(s)."
)


def route(unit: UnitFacts, category: str, author_id: int | None, directory: Directory) -> Route:
    """The approver group for a message of ``category`` written by ``author_id`` in ``unit``."""
    if unit.is_research or category == "product":
        group, group_unit, article = "research_head", directory.research_unit_id, "Art 14"
        members = directory.heads.get(group_unit, ()) if group_unit else ()
    elif unit.kind == "branch" and category == "advisory":
        group, group_unit, article = "research_reviewers", directory.research_unit_id, "Art 9"
        members = directory.research_reviewers
    else:
        group, group_unit = "unit_heads", unit.id
        article = "Art 9" if unit.kind == "branch" else "Art 8"
        members = directory.heads.get(unit.id, ())
    others = tuple(m for m in members if m != author_id)
    if others:
        return Route(group, group_unit, article, others)
    market = directory.market_unit_id
    market_others = (
        tuple(m for m in directory.heads.get(market, ()) if m != author_id) if market else ()
    )
    return Route("market_heads", market, article, market_others, fallback=True)


def load_directory(unit_ids: set[int] | None = None) -> Directory:
    """The approvers of the given units (plus Research and Market) from the database."""
    research, market = org.research_unit(), org.market_unit()
    wanted = set(unit_ids or ())
    wanted |= {u.id for u in (research, market) if u is not None}
    heads = {uid: tuple(u.id for u in org.unit_approvers(uid)) for uid in wanted}
    reviewers: tuple[int, ...] = ()
    if research is not None:
        users = db.session.execute(
            select(User)
            .where(User.unit_id == research.id, User.active.is_(True))
            .order_by(User.username)
        ).scalars()
        reviewers = tuple(u.id for u in users if u.can("message.review_advisory"))
    return Directory(
        heads=heads,
        research_reviewers=reviewers,
        research_unit_id=research.id if research else None,
        market_unit_id=market.id if market else None,
    )


def route_for(unit: Unit, category: str, author_id: int | None) -> Route:
    """``route`` with the directory loaded from the database."""
    return route(UnitFacts.of(unit), category, author_id, load_directory({unit.id}))


def group_members(group: str, unit_id: int | None) -> list[User]:
    """The people of a stored route group now (used to check who may decide)."""
    if unit_id is None:
        return []
    users = db.session.execute(
        select(User).where(User.unit_id == unit_id, User.active.is_(True)).order_by(User.username)
    ).scalars()
    permission = "message.review_advisory" if group == "research_reviewers" else "message.approve"
    return [u for u in users if u.can(permission)]


def is_member(user: User, group: str, unit_id: int | None) -> bool:
    """True when ``user`` belongs to the stored route group (regardless of authorship)."""
    if unit_id is None or user.unit_id != unit_id or not user.active:
        return False
    permission = "message.review_advisory" if group == "research_reviewers" else "message.approve"
    return user.can(permission)


def groups_of(user: User) -> list[tuple[str, int]]:
    """Every (group, unit) whose pending messages wait for ``user`` (the inbox, R-48)."""
    out: list[tuple[str, int]] = []
    unit = user.unit
    if user.can("message.approve"):
        out.append(("unit_heads", unit.id))
        if unit.is_research:
            out.append(("research_head", unit.id))
        if unit.is_market:
            out.append(("market_heads", unit.id))
    if unit.is_research and user.can("message.review_advisory"):
        out.append(("research_reviewers", unit.id))
    return out
