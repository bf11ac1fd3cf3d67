"""Permission applications (R-10 to R-13): prepare, sign, approve, execute, reject, withdraw.

The route of Appendix 1 《和兴证券短信服务管理系统操作权限申请/变更表》:

1. *prepare* — any member of staff holding ``access.request`` prepares an application
   for their own unit (new account, change of permissions, deregistration). When the
   applicant is a head of the unit (``access.sign``), the preparation *is* the head's
   signature and the application starts signed; otherwise it waits for a head.
2. *sign* — a head of the applicant's unit (``access.sign``), never the applicant, and
   never the person the application is about.
3. *approve* — a company approver (``access.approve``), who neither prepared nor signed
   it and is not the person concerned.
4. *execute* — the Market admin (``access.execute``), only after company approval and
   not before the effective date, never on their own account. A new account gets a
   generated initial password, returned once to the caller and stored only as a hash
   (R-11); a change replaces the user's roles; a deregistration deactivates the account
   only when ``handover.can_deactivate`` allows it (R-13) and is flagged late when it
   happens after its effective date (R-12).

At every open step the person who could take it may instead *reject* it with a reason,
which goes back to the applicant; the applicant may *withdraw* it until it is executed.

Every function here checks before it writes: a refusal (``PermissionDenied``,
``Conflict``, ``ValidationError``) leaves nothing changed. Each step writes one audit
row naming the application, in the caller's transaction; the caller commits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta

from flask_babel import gettext as _
from sqlalchemy import Select, and_, func, or_, select

from app.extensions import db
from app.models import AccessRequest, Role, RoleChange, User
from app.models.access import KINDS_WITH_ROLES, KINDS_WITH_USER, OPEN_STATUSES
from app.services import audit, org
from app.services.auth import generate_initial_password
from app.services.errors import Conflict, NotFound, NotInScope, PermissionDenied, ValidationError
from app.services.handover import DeactivationCheck, awaiting_count, can_deactivate
from app.timeutil import local_today, utcnow

# The kinds a person can prepare. "interface_user" is executed by the API clients
# area, which creates an API client (and its system account) instead of a staff account.
PREPARABLE_KINDS = ("new_account", "change", "deregister", "interface_user")
# Roles never granted through this form: the API client role belongs to interface users.
NOT_REQUESTABLE = {"api_client"}
# The permission that makes a role see every unit's data; "all units" in the form.
ALL_UNITS_PERMISSION = "data.all_units"

USERNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{2,59}$")
NAME_MAX = 100
POST_MAX = 100
REASON_MAX = 1000
# How far the effective date may lie from today: catches typing mistakes such as 2062.
EFFECTIVE_WINDOW_DAYS = 366

STEP_PERMISSION = {"sign": "access.sign", "approve": "access.approve", "execute": "access.execute"}
_STEPS = list(STEP_PERMISSION)


class StillServesCustomers(Conflict):
    """A deregistration refused because the user still serves customers (R-13)."""

    def __init__(self, check: DeactivationCheck):
        super().__init__(check.reason)
        self.check = check


@dataclass(frozen=True)
class ExecutionResult:
    """What an execution did. ``initial_password`` is set for a new account only and exists
    nowhere else: the caller shows it once and drops it."""

    request: AccessRequest
    user: User
    initial_password: str | None = None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HandoverNeeded:
    """Why a deregistration must wait (R-13): the customers the user still serves, of which
    ``awaiting`` wait for the user to assign them, and the superior they go to (R-31)."""

    user: User
    customers: int
    awaiting: int
    superior: User | None
    reason: str


@dataclass(frozen=True)
class ExecutionPreview:
    """What executing would do, for the admin's execute screen (nothing is written)."""

    added: list[Role]
    removed: list[Role]
    handover: HandoverNeeded | None
    too_early: bool

    @property
    def blocked(self) -> bool:
        return self.handover is not None


# ---------------------------------------------------------------- reading


def requestable_roles() -> list[Role]:
    """The roles a form may ask for, by code."""
    roles = db.session.execute(select(Role).order_by(Role.code)).scalars()
    return [r for r in roles if r.code not in NOT_REQUESTABLE]


def all_unit_role_codes() -> set[str]:
    """Codes of the roles that carry ``data.all_units``: asking for one is asking for all units."""
    return {r.code for r in requestable_roles() if ALL_UNITS_PERMISSION in r.permissions}


def unit_members(unit_id: int, *, active_only: bool = True) -> list[User]:
    """The users of a unit, for the form's choice of person or superior."""
    q = select(User).where(User.unit_id == unit_id)
    if active_only:
        q = q.where(User.active.is_(True))
    return list(db.session.execute(q.order_by(User.username)).scalars())


def _sees_every_application(user: User) -> bool:
    return user.can_any("access.approve", "access.execute", "admin.users", "audit.view")


def visible_query(user: User) -> Select:
    """Applications the user may read: their own, those about them, their unit's for a head,
    and every one for company approvers, the Market admin and auditors."""
    q = select(AccessRequest)
    if _sees_every_application(user):
        return q
    cond = or_(AccessRequest.applicant_id == user.id, AccessRequest.target_user_id == user.id)
    if user.can("access.sign"):
        cond = or_(cond, AccessRequest.applicant_unit_id == user.unit_id)
    return q.where(cond)


def get_request(user: User, request_id: int) -> AccessRequest:
    """One application the user may read; ``NotInScope`` (404) otherwise, like a missing one."""
    req = db.session.get(AccessRequest, request_id)
    if req is None:
        raise NotFound(_("There is no such application."))
    if not _sees_every_application(user) and not (
        req.applicant_id == user.id
        or req.target_user_id == user.id
        or (user.can("access.sign") and req.applicant_unit_id == user.unit_id)
    ):
        raise NotInScope(_("There is no such application."))
    return req


def _inbox_condition(user: User, step: str):
    """SQL condition for the applications waiting for ``user`` at ``step``; None if never."""
    if not user.can(STEP_PERMISSION[step]):
        return None
    not_about_me = or_(
        AccessRequest.target_user_id.is_(None), AccessRequest.target_user_id != user.id
    )
    if step == "sign":
        return and_(
            AccessRequest.status == "submitted",
            AccessRequest.applicant_unit_id == user.unit_id,
            AccessRequest.applicant_id != user.id,
            not_about_me,
        )
    if step == "approve":
        return and_(
            AccessRequest.status == "signed",
            AccessRequest.applicant_id != user.id,
            AccessRequest.signed_by_id != user.id,
            not_about_me,
        )
    return and_(AccessRequest.status == "approved", not_about_me)


def inbox(user: User, step: str) -> list[AccessRequest]:
    """The applications waiting for the user at one step, oldest effective date first."""
    cond = _inbox_condition(user, step)
    if cond is None:
        return []
    return list(
        db.session.execute(
            select(AccessRequest)
            .where(cond)
            .order_by(AccessRequest.effective_date, AccessRequest.id)
        ).scalars()
    )


def inbox_steps(user: User) -> list[str]:
    """The steps of the route the user's roles take part in."""
    return [step for step, perm in STEP_PERMISSION.items() if user.can(perm)]


def inbox_count(user: User) -> int:
    """How many applications wait for the user at any step (the nav badge)."""
    conds = [c for c in (_inbox_condition(user, s) for s in STEP_PERMISSION) if c is not None]
    if not conds:
        return 0
    return db.session.execute(select(func.count(AccessRequest.id)).where(or_(*conds))).scalar_one()


def open_deregistrations() -> list[AccessRequest]:
    """Deregistrations not yet executed, rejected or withdrawn (the admin's dashboard)."""
    return list(
        db.session.execute(
            select(AccessRequest)
            .where(AccessRequest.kind == "deregister", AccessRequest.status.in_(OPEN_STATUSES))
            .order_by(AccessRequest.effective_date, AccessRequest.id)
        ).scalars()
    )


def late_deregistrations(days: int = 90) -> list[AccessRequest]:
    """Deregistrations executed after their effective date in the last ``days`` days (R-12)."""
    since = utcnow() - timedelta(days=days)
    return list(
        db.session.execute(
            select(AccessRequest)
            .where(
                AccessRequest.kind == "deregister",
                AccessRequest.late.is_(True),
                AccessRequest.executed_at >= since,
            )
            .order_by(AccessRequest.executed_at.desc())
        ).scalars()
    )


def is_overdue(req: AccessRequest, today: date | None = None) -> bool:
    """An open application whose effective date has passed: executing it now makes it late."""
    return req.is_open and req.effective_date < (today or local_today())


def requests_about(user_id: int) -> list[AccessRequest]:
    """The applications that concern one user (changed, deregistered or created by them)."""
    return list(
        db.session.execute(
            select(AccessRequest)
            .where(
                or_(
                    AccessRequest.target_user_id == user_id, AccessRequest.result_user_id == user_id
                )
            )
            .order_by(AccessRequest.id.desc())
        ).scalars()
    )


def role_history(user_id: int) -> list[RoleChange]:
    """Every role added to or removed from the user, newest first."""
    return list(
        db.session.execute(
            select(RoleChange)
            .where(RoleChange.user_id == user_id)
            .order_by(RoleChange.at.desc(), RoleChange.id.desc())
        ).scalars()
    )


# ---------------------------------------------------------------- preparing


def _parse_date(value) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat((value or "").strip())
    except ValueError:
        return None


def _roles_by_code(codes) -> tuple[list[Role], list[str]]:
    """The requestable roles named, and the codes that are not requestable roles."""
    available = {r.code: r for r in requestable_roles()}
    chosen, unknown = [], []
    for code in dict.fromkeys(c.strip() for c in codes or () if c and c.strip()):
        if code in available:
            chosen.append(available[code])
        else:
            unknown.append(code)
    return chosen, unknown


def _has_open_request(target_user_id: int) -> bool:
    return (
        db.session.execute(
            select(AccessRequest.id)
            .where(
                AccessRequest.target_user_id == target_user_id,
                AccessRequest.status.in_(OPEN_STATUSES),
            )
            .limit(1)
        ).first()
        is not None
    )


def _username_taken(username: str) -> bool:
    if db.session.execute(
        select(User.id).where(func.lower(User.username) == username.lower())
    ).first():
        return True
    return (
        db.session.execute(
            select(AccessRequest.id)
            .where(
                AccessRequest.kind == "new_account",
                AccessRequest.status.in_(OPEN_STATUSES),
                func.lower(AccessRequest.username) == username.lower(),
            )
            .limit(1)
        ).first()
        is not None
    )


def prepare(
    actor: User,
    *,
    kind: str,
    person_name: str = "",
    post: str = "",
    target_user_id: int | None = None,
    username: str = "",
    superior_id: int | None = None,
    roles=(),
    data_scope: str = "unit",
    reason: str = "",
    effective_date=None,
) -> AccessRequest:
    """Prepare and submit an application for the actor's unit (step 1).

    Validates every field at once: a ``ValidationError`` carries ``errors`` (field name →
    message) for the form. ``PermissionDenied`` without ``access.request``. A head's
    application is signed by the preparation itself (see the module docstring).
    """
    if not actor.can("access.request"):
        raise PermissionDenied()
    errors: dict[str, str] = {}
    if kind not in PREPARABLE_KINDS:
        raise ValidationError(_("Choose the kind of application."))

    target: User | None = None
    if kind in KINDS_WITH_USER:
        target = db.session.get(User, target_user_id) if target_user_id else None
        if target is None:
            errors["target_user_id"] = _("Choose the user the application is about.")
        elif target.unit_id != actor.unit_id:
            errors["target_user_id"] = _(
                "%(name)s is not a member of your unit; applications are "
                "prepared by the person's own unit.",
                name=target.display_name,
            )
        elif not target.active:
            errors["target_user_id"] = _(
                "%(name)s is already deactivated.", name=target.display_name
            )
        elif _has_open_request(target.id):
            errors["target_user_id"] = _(
                "An application about %(name)s is already open; finish or withdraw it first.",
                name=target.display_name,
            )
        person_name = target.display_name if target else ""
        post = (post or "").strip() or (target.post if target else "")

    person_name = (person_name or "").strip()
    post = (post or "").strip()
    username = (username or "").strip()
    if kind in ("new_account", "interface_user"):  # an interface user's "name" is its system's
        if not person_name:
            errors["person_name"] = _("Enter the person's name.")
        elif len(person_name) > NAME_MAX:
            errors["person_name"] = _(
                "The name is too long (at most %(n)s characters).", n=NAME_MAX
            )
    if kind == "new_account":
        if not USERNAME_RE.match(username):
            errors["username"] = _(
                "The username has 3 to 60 characters: letters, digits, '.', '_' "
                "or '-', starting with a letter."
            )
        elif _username_taken(username):
            errors["username"] = _(
                "The username %(name)s is taken or already applied for.", name=username
            )
    if len(post) > POST_MAX:
        errors["post"] = _("The post is too long (at most %(n)s characters).", n=POST_MAX)

    superior: User | None = None
    if kind == "new_account" and superior_id:
        superior = db.session.get(User, superior_id)
        if superior is None or superior.unit_id != actor.unit_id or not superior.active:
            errors["superior_id"] = _("The superior must be an active member of your unit.")

    chosen: list[Role] = []
    if kind == "interface_user":
        # The one role of an interface user, given by execution (not requestable on the form).
        chosen = list(db.session.execute(select(Role).where(Role.code == "api_client")).scalars())
        data_scope = "unit"
    elif kind in KINDS_WITH_ROLES:
        chosen, unknown = _roles_by_code(roles)
        if unknown:
            errors["roles"] = _(
                "These roles cannot be applied for: %(codes)s.", codes=", ".join(unknown)
            )
        elif not chosen:
            errors["roles"] = _("Choose at least one role.")
        elif data_scope not in ("unit", "all"):
            errors["data_scope"] = _("Choose the data scope: own unit or all units.")
        else:
            wide = sorted(r.code for r in chosen if ALL_UNITS_PERMISSION in r.permissions)
            if data_scope == "all" and not wide:
                errors["data_scope"] = _(
                    "All units comes only with a role that sees every unit: %(codes)s.",
                    codes=", ".join(sorted(all_unit_role_codes())),
                )
            elif data_scope == "unit" and wide:
                errors["data_scope"] = _(
                    "The role(s) %(codes)s see every unit: choose all units, or leave them out.",
                    codes=", ".join(wide),
                )
        unchanged = (
            kind == "change"
            and target is not None
            and not errors
            and {r.code for r in chosen} == {r.code for r in target.roles}
            and post == (target.post or "")
        )
        if unchanged:
            errors["roles"] = _(
                "These are the roles %(name)s already holds; nothing would change.",
                name=target.display_name,
            )
    else:
        data_scope = "unit"

    reason = (reason or "").strip()
    if not reason:
        errors["reason"] = _("Give the reason for the application.")
    elif len(reason) > REASON_MAX:
        errors["reason"] = _("The reason is too long (at most %(n)s characters).", n=REASON_MAX)

    effective = _parse_date(effective_date)
    today = local_today()
    if effective is None:
        errors["effective_date"] = _("Enter the effective date as YYYY-MM-DD.")
    elif abs((effective - today).days) > EFFECTIVE_WINDOW_DAYS:
        errors["effective_date"] = _("The effective date must lie within a year of today.")

    if errors:
        raise ValidationError(" ".join(errors.values()), errors=errors)

    now = utcnow()
    req = AccessRequest(
        kind=kind,
        status="submitted",
        applicant_id=actor.id,
        applicant_unit_id=actor.unit_id,
        person_name=person_name,
        person_unit_id=actor.unit_id,
        person_post=post,
        target_user_id=target.id if target else None,
        username=username if kind == "new_account" else "",
        superior_id=superior.id if superior else None,
        role_codes=" ".join(r.code for r in chosen),
        data_scope=data_scope,
        reason=reason,
        effective_date=effective,
        created_at=now,
        rejected_step="",
        rejection_reason="",
        late=False,
    )
    db.session.add(req)
    db.session.flush()
    audit.record("access.submitted", actor=actor, target=req, details=_details(req))
    if actor.can("access.sign") and req.target_user_id != actor.id:
        # The applicant is a head of the unit: their preparation is the head's signature.
        req.status, req.signed_by_id, req.signed_at = "signed", actor.id, now
        audit.record(
            "access.signed",
            actor=actor,
            target=req,
            details={**_details(req), "by_preparation": True},
        )
    return req


def _details(req: AccessRequest, **extra) -> dict:
    d = {"request": req.number, "kind": req.kind, "person": req.person_name}
    if req.target_user_id:
        d["user_id"] = req.target_user_id
    if req.roles:
        d["roles"] = req.roles
    d.update(extra)
    return d


# ---------------------------------------------------------------- the steps


def _lock(request_id: int) -> AccessRequest:
    """Load the application FOR UPDATE (PostgreSQL) so two people cannot take one step twice."""
    req = db.session.execute(
        select(AccessRequest)
        .where(AccessRequest.id == request_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if req is None:
        raise NotFound(_("There is no such application."))
    return req


_STATE_MESSAGES = {
    "executed": lambda: _("This application has already been executed."),
    "rejected": lambda: _("This application has been rejected."),
    "withdrawn": lambda: _("This application has been withdrawn by the applicant."),
}


def _require_status(req: AccessRequest, step: str) -> None:
    """``Conflict`` unless the application waits for ``step``; the message says what it waits for."""
    if req.next_step == step:
        return
    if req.status in _STATE_MESSAGES:
        raise Conflict(_STATE_MESSAGES[req.status]())
    waiting = {
        "sign": _("It waits for the signature of the head of the applicant's unit."),
        "approve": _("It waits for company approval."),
        "execute": _("It waits for execution by the Market admin."),
    }[req.next_step]
    if _STEPS.index(step) < _STEPS.index(req.next_step):
        raise Conflict(_("This application is already past that step.") + " " + waiting)
    early = {
        "approve": _(
            "This application cannot be approved yet: the head of the applicant's unit "
            "must sign it first."
        ),
        "execute": _("This application cannot be executed yet: the company must approve it first."),
    }[step]
    raise Conflict(early + " " + waiting)


def _check_actor(actor: User, req: AccessRequest, step: str) -> None:
    """``PermissionDenied`` unless ``actor`` may take ``step`` on ``req``: the role, the unit,
    and the four-eyes rules (nobody signs, approves or executes their own application or one
    about their own account; the approver did not sign it)."""
    if not actor.can(STEP_PERMISSION[step]):
        raise PermissionDenied()
    if req.target_user_id == actor.id:
        raise PermissionDenied(
            _("This application is about your own account; someone else must handle it.")
        )
    if step == "sign":
        if actor.unit_id != req.applicant_unit_id:
            raise PermissionDenied(
                _(
                    "Only a head of %(unit)s may sign this application.",
                    unit=req.applicant_unit.name,
                )
            )
        if actor.id == req.applicant_id:
            raise PermissionDenied(
                _("You prepared this application; another head of the unit must sign it.")
            )
    elif step == "approve":
        if actor.id == req.applicant_id:
            raise PermissionDenied(_("You prepared this application and cannot approve it."))
        if actor.id == req.signed_by_id:
            raise PermissionDenied(
                _(
                    "You signed this application as unit head; another person "
                    "must approve it for the company."
                )
            )


def allowed_actions(user: User, req: AccessRequest) -> set[str]:
    """What ``user`` may do with ``req`` now: a subset of sign, approve, execute, reject,
    withdraw. The pages show only these buttons; the steps check again on their own."""
    actions: set[str] = set()
    step = req.next_step
    if step is not None:
        try:
            _check_actor(user, req, step)
        except PermissionDenied:
            pass
        else:
            actions |= {step, "reject"}
    if req.is_open and req.applicant_id == user.id:
        actions.add("withdraw")
    return actions


def sign(actor: User, request_id: int) -> AccessRequest:
    """Step 2: the head of the applicant's unit signs."""
    req = _lock(request_id)
    _check_actor(actor, req, "sign")
    _require_status(req, "sign")
    req.status, req.signed_by_id, req.signed_at = "signed", actor.id, utcnow()
    audit.record("access.signed", actor=actor, target=req, details=_details(req))
    return req


def approve(actor: User, request_id: int) -> AccessRequest:
    """Step 3: a company approver approves a signed application."""
    req = _lock(request_id)
    _check_actor(actor, req, "approve")
    _require_status(req, "approve")
    req.status, req.approved_by_id, req.approved_at = "approved", actor.id, utcnow()
    audit.record("access.approved", actor=actor, target=req, details=_details(req))
    return req


def reject(actor: User, request_id: int, reason: str) -> AccessRequest:
    """Reject an open application at the step it waits for, with a reason for the applicant.

    Only someone who could take that step may reject at it (same checks as the step).
    """
    req = _lock(request_id)
    step = req.next_step
    if step is None:
        raise Conflict(_STATE_MESSAGES[req.status]())
    _check_actor(actor, req, step)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(
            _("Give the reason for the rejection; the applicant will read it."),
            errors={"reason": _("Give the reason for the rejection.")},
        )
    if len(reason) > REASON_MAX:
        raise ValidationError(
            _("The reason is too long (at most %(n)s characters).", n=REASON_MAX),
            errors={"reason": _("Too long.")},
        )
    req.status, req.rejected_by_id, req.rejected_at = "rejected", actor.id, utcnow()
    req.rejected_step, req.rejection_reason = step, reason
    audit.record(
        "access.rejected", actor=actor, target=req, details=_details(req, step=step, reason=reason)
    )
    return req


def withdraw(actor: User, request_id: int) -> AccessRequest:
    """The applicant takes back an application that has not been executed."""
    req = _lock(request_id)
    if req.applicant_id != actor.id:
        raise PermissionDenied(_("Only the applicant may withdraw an application."))
    if not req.is_open:
        raise Conflict(_STATE_MESSAGES[req.status]())
    req.status, req.withdrawn_at = "withdrawn", utcnow()
    audit.record("access.withdrawn", actor=actor, target=req, details=_details(req))
    return req


# ---------------------------------------------------------------- execution


def _set_roles(
    user: User, roles: list[Role], *, req: AccessRequest, actor: User
) -> tuple[list[str], list[str]]:
    """Give ``user`` exactly ``roles``, writing one ``RoleChange`` per role added or removed."""
    now = utcnow()
    have = {r.code: r for r in user.roles}
    want = {r.code: r for r in roles}
    added = sorted(set(want) - set(have))
    removed = sorted(set(have) - set(want))
    for code in added:
        db.session.add(
            RoleChange(
                user_id=user.id,
                role_id=want[code].id,
                change="added",
                request_id=req.id,
                actor_id=actor.id,
                at=now,
            )
        )
    for code in removed:
        db.session.add(
            RoleChange(
                user_id=user.id,
                role_id=have[code].id,
                change="removed",
                request_id=req.id,
                actor_id=actor.id,
                at=now,
            )
        )
    user.roles = [want[c] for c in sorted(want)]
    return added, removed


def _requested_roles(req: AccessRequest) -> list[Role]:
    chosen, unknown = _roles_by_code(req.roles)
    if unknown:
        raise Conflict(
            _(
                "The roles %(codes)s no longer exist; reject the application and apply again.",
                codes=", ".join(unknown),
            )
        )
    return chosen


def preview_execution(req: AccessRequest) -> ExecutionPreview:
    """What ``execute`` would do now, without writing: roles added and removed, whether a
    deregistration is allowed (R-13), whether the effective date is still ahead."""
    added: list[Role] = []
    removed: list[Role] = []
    if req.kind == "new_account":
        added, _unknown = _roles_by_code(req.roles)
    elif req.kind == "change" and req.target_user is not None:
        want, _unknown = _roles_by_code(req.roles)
        have = {r.code for r in req.target_user.roles}
        added = [r for r in want if r.code not in have]
        removed = [r for r in req.target_user.roles if r.code not in {w.code for w in want}]
    elif req.kind == "deregister" and req.target_user is not None:
        removed = list(req.target_user.roles)
    return ExecutionPreview(
        added=added,
        removed=removed,
        handover=handover_needed(req),
        too_early=req.effective_date > local_today(),
    )


def handover_needed(req: AccessRequest) -> HandoverNeeded | None:
    """For an open deregistration whose user still serves customers, what must happen first.

    The handover itself is the user's own step (R-31, Art 23: the customers go to the
    user's superior, who assigns them); the pages offer it to the user and tell the
    Market admin who must act. None when nothing blocks the deregistration.
    """
    user = req.target_user
    if req.kind != "deregister" or not req.is_open or user is None:
        return None
    check = can_deactivate(user)
    if check:
        return None
    return HandoverNeeded(
        user=user,
        customers=check.customers,
        awaiting=awaiting_count(user),
        superior=user.superior if user.superior and user.superior.active else None,
        reason=check.reason,
    )


def open_deregistration_about(user: User) -> AccessRequest | None:
    """The open deregistration of the user's own account, if any (for their reminder)."""
    return db.session.execute(
        select(AccessRequest)
        .where(
            AccessRequest.kind == "deregister",
            AccessRequest.target_user_id == user.id,
            AccessRequest.status.in_(OPEN_STATUSES),
        )
        .order_by(AccessRequest.id)
        .limit(1)
    ).scalar_one_or_none()


def execute(actor: User, request_id: int) -> ExecutionResult:
    """Step 4: the Market admin carries out an approved application.

    Refused (nothing written) with ``Conflict`` before company approval, before the effective
    date, when the username was taken meanwhile, or — ``StillServesCustomers`` — when a
    deregistered user still serves customers (R-13). A new account's initial password is in
    the result only: never stored in clear, never in the audit row.
    """
    req = _lock(request_id)
    _check_actor(actor, req, "execute")
    _require_status(req, "execute")
    today = local_today()
    if req.effective_date > today:
        raise Conflict(
            _(
                "This application takes effect on %(date)s; it can be executed from that day.",
                date=req.effective_date.isoformat(),
            )
        )
    now = utcnow()
    password = None
    added: list[str] = []
    removed: list[str] = []
    if req.kind == "new_account":
        if db.session.execute(
            select(User.id).where(func.lower(User.username) == req.username.lower())
        ).first():
            raise Conflict(
                _(
                    "The username %(name)s was taken meanwhile; reject the application so "
                    "the unit can apply with another.",
                    name=req.username,
                )
            )
        roles = _requested_roles(req)
        password = generate_initial_password()
        user = org.create_user(
            username=req.username,
            display_name=req.person_name,
            unit=req.person_unit,
            password=password,
            roles=[],
            superior=req.superior,
            post=req.person_post,
            must_change_password=True,
            actor=actor,
        )
        added, removed = _set_roles(user, roles, req=req, actor=actor)
    elif req.kind == "change":
        user = _lock_user(req.target_user_id)
        if not user.active:
            raise Conflict(_("%(name)s has been deactivated meanwhile.", name=user.display_name))
        added, removed = _set_roles(user, _requested_roles(req), req=req, actor=actor)
        if req.person_post and req.person_post != user.post:
            user.post = req.person_post
    elif req.kind == "deregister":
        user = _lock_user(req.target_user_id)
        if not user.active:
            raise Conflict(_("%(name)s has been deactivated meanwhile.", name=user.display_name))
        check = can_deactivate(user)
        if not check:
            raise StillServesCustomers(check)
        added, removed = _set_roles(user, [], req=req, actor=actor)
        user.active = False
        # The session key carries the version: every open session of the user ends now.
        user.session_version = (user.session_version or 1) + 1
        req.late = today > req.effective_date
    elif req.kind == "interface_user":
        # the API clients area creates the client, its system account and its key;
        # the key goes to the one-time screen in ``initial_password``, like a password.
        from app.services.api_clients import create_client_for_request

        client, password = create_client_for_request(req, actor)
        user = client.user
        added = ["api_client"]
    else:
        raise Conflict(_("Applications of this kind cannot be executed here."))
    req.status, req.executed_by_id, req.executed_at = "executed", actor.id, now
    req.result_user_id = user.id
    audit.record(
        "access.executed",
        actor=actor,
        target=req,
        details=_details(
            req,
            user=user.username,
            added=added,
            removed=removed,
            late=req.late,
            deactivated=req.kind == "deregister",
        ),
    )
    return ExecutionResult(
        request=req, user=user, initial_password=password, added=added, removed=removed
    )


def _lock_user(user_id: int | None) -> User:
    user = db.session.execute(
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if user is None:
        raise Conflict(_("The user of this application no longer exists."))
    return user
