"""Who receives a message (R-45), who is left out and why, in set-based SQL.

The audience is a small JSON document on ``Message.audience``::

    {"kind": "customers", "branches": [6], "managers": [11], "risk_levels": ["C3"],
     "tags": ["基金"], "upload_id": 4}
    {"kind": "staff", "units": [6, 7]}

Criteria combine with AND (any of the listed values within one criterion). Customers
are limited to the author's scope: a branch targets only its own customers (R-03,
R-41); an HQ department may target every branch. Internal notices go to staff by unit.

``rows_select`` is the one definition of the audience: a SELECT of
``(customer_id, user_id, unit_id, mobile, carrier, reason)`` where ``reason`` is NULL for
a recipient and otherwise says why the row is left out, first match wins:

    inactive -> refused -> undetermined -> invalid_mobile -> cap -> duplicate

The preview counts it (``preview``); the sending area builds its recipients from it
(``message_rows``), so what the author was shown and what goes out cannot drift apart.
Consent: every category needs "agreed" (R-30); only the consent inquiry (R-33) goes to
"undetermined" customers and never to refused ones. The frequency cap (R-46, Art 12)
counts the category's messages already sent to the customer in the send's calendar day
and the six days before (``app.services.frequency_caps``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    Integer,
    String,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY

from app.extensions import db
from app.models import (
    AudienceUpload,
    AudienceUploadRow,
    Customer,
    Message,
    SharedMobile,
    Unit,
    User,
)
from app.models.customers import RISK_LEVELS
from app.models.messages import UPLOAD_KINDS
from app.services import audit, customers, frequency_caps, message_settings
from app.services.errors import NotFound, PermissionDenied, ValidationError
from app.timeutil import utcnow

KINDS = ("customers", "staff")
REASONS = ("inactive", "refused", "undetermined", "agreed", "invalid_mobile", "cap", "duplicate")
REASON_LABELS = {
    "inactive": _l("inactive (closed account or deactivated user)"),
    "refused": _l("refused to receive messages"),
    "undetermined": _l("consent undetermined"),
    "agreed": _l("already agreed (the inquiry is only for undetermined customers)"),
    "invalid_mobile": _l("invalid or doubtful mobile"),
    "cap": _l("over the frequency cap"),
    "duplicate": _l("duplicate number"),
}
CRM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
UPLOAD_MAX_BYTES = 20 * 1024 * 1024
UPLOAD_MAX_LINES = 1_000_000
BAD_LINES_KEPT = 200
_LIST_MAX = 500


@dataclass
class AudienceSpec:
    kind: str = "customers"
    branches: list[int] = field(default_factory=list)
    managers: list[int] = field(default_factory=list)
    risk_levels: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    upload_id: int | None = None
    units: list[int] = field(default_factory=list)

    def to_json(self) -> str:
        if self.kind == "staff":
            data: dict = {"kind": "staff", "units": self.units}
        else:
            data = {
                "kind": "customers",
                "branches": self.branches,
                "managers": self.managers,
                "risk_levels": self.risk_levels,
                "tags": self.tags,
                "upload_id": self.upload_id,
            }
        return json.dumps(data, ensure_ascii=False)

    @property
    def is_empty(self) -> bool:
        """No criterion that selects anyone was given."""
        if self.kind == "staff":
            return not self.units
        return not (self.branches or self.upload_id)


def _int_list(value, name: str) -> list[int]:
    if value in (None, ""):
        return []
    if not isinstance(value, list | tuple):
        value = [value]
    try:
        out = sorted({int(v) for v in value if v not in (None, "")})
    except (TypeError, ValueError) as exc:
        raise ValidationError(_("The audience field %(f)s is not valid.", f=name)) from exc
    if len(out) > _LIST_MAX:
        raise ValidationError(_("The audience field %(f)s lists too many values.", f=name))
    return out


def parse(raw) -> AudienceSpec:
    """An ``AudienceSpec`` from stored JSON or a dict; raises ``ValidationError`` if malformed."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw or "{}")
        except ValueError as exc:
            raise ValidationError(_("The audience is not valid.")) from exc
    if not isinstance(raw, dict):
        raise ValidationError(_("The audience is not valid."))
    kind = raw.get("kind") or "customers"
    if kind not in KINDS:
        raise ValidationError(_("The audience is not valid."))
    risk = raw.get("risk_levels") or []
    risk = [risk] if isinstance(risk, str) else list(risk)
    if any(r not in RISK_LEVELS for r in risk):
        raise ValidationError(_("Risk levels are C1 to C5."))
    tags = raw.get("tags") or []
    if isinstance(tags, str):
        tags = re.split(r"[,，;；\s]+", tags)
    tags = sorted({str(t).strip() for t in tags if str(t).strip()})
    if any(len(t) > 40 for t in tags) or len(tags) > 50:
        raise ValidationError(_("Preference tags are at most 40 characters, at most 50 of them."))
    upload = raw.get("upload_id")
    try:
        upload_id = int(upload) if upload not in (None, "") else None
    except (TypeError, ValueError) as exc:
        raise ValidationError(_("The audience is not valid.")) from exc
    return AudienceSpec(
        kind=kind,
        branches=_int_list(raw.get("branches"), "branches"),
        managers=_int_list(raw.get("managers"), "managers"),
        risk_levels=sorted(set(risk)),
        tags=tags,
        upload_id=upload_id,
        units=_int_list(raw.get("units"), "units"),
    )


def scope_branch_ids(unit: Unit) -> set[int] | None:
    """The branches a unit's messages may reach: a branch its own (R-03, R-41), HQ all (None)."""
    return {unit.id} if unit.kind == "branch" else None


def validate(spec: AudienceSpec, *, unit: Unit, author: User | None, category: str) -> None:
    """Refuse an audience the author may not use; raises PermissionDenied / ValidationError."""
    if category == "internal" and spec.kind != "staff":
        raise ValidationError(_("An internal notice goes to staff: choose units."))
    if category != "internal" and spec.kind != "customers":
        raise ValidationError(
            _("Only internal notices go to staff; this category goes to customers.")
        )
    allowed = scope_branch_ids(unit)
    if spec.kind == "staff":
        known = set(db.session.execute(select(Unit.id).where(Unit.id.in_(spec.units))).scalars())
        if known != set(spec.units):
            raise ValidationError(_("The audience names a unit that does not exist."))
        if allowed is not None and not set(spec.units) <= allowed:
            raise PermissionDenied(_("A branch can only send internal notices to its own staff."))
        return
    if spec.branches:
        rows = db.session.execute(
            select(Unit.id, Unit.kind).where(Unit.id.in_(spec.branches))
        ).all()
        if len(rows) != len(spec.branches) or any(kind != "branch" for _id, kind in rows):
            raise ValidationError(_("The audience names a unit that is not a branch."))
        if allowed is not None and not set(spec.branches) <= allowed:
            raise PermissionDenied(_("Branch users can only target their own branch's customers."))
    if spec.managers:
        rows = db.session.execute(
            select(User.id, User.unit_id).where(User.id.in_(spec.managers))
        ).all()
        if len(rows) != len(spec.managers):
            raise ValidationError(_("The audience names serving staff who do not exist."))
        if allowed is not None and any(unit_id not in allowed for _id, unit_id in rows):
            raise PermissionDenied(_("Branch users can only target their own branch's customers."))
    if spec.upload_id is not None:
        upload = db.session.get(AudienceUpload, spec.upload_id)
        if upload is None or (
            author is not None and upload.author_id != author.id and upload.unit_id != unit.id
        ):
            raise NotFound(_("The uploaded list was not found."))
        if not upload.confirmed:
            raise ValidationError(
                _(
                    "The uploaded list has bad lines: confirm that only the good ones are used, or upload a corrected file."
                )
            )


# ------------------------------------------------------------------ the one query


def required_consent(category: str) -> str:
    return "undetermined" if category == "inquiry" else "agreed"


def _criteria(t, spec: AudienceSpec, unit: Unit) -> list:
    """The audience's conditions on the customers table (or an alias of it) ``t``."""
    c = t.c
    conditions = []
    allowed = scope_branch_ids(unit)
    branches = set(spec.branches)
    if allowed is not None:
        branches = (branches & allowed) if branches else allowed
        if not branches:
            conditions.append(false())
    if branches:
        conditions.append(c.branch_id.in_(sorted(branches)))
    if spec.managers:
        conditions.append(c.manager_id.in_(spec.managers))
    if spec.risk_levels:
        conditions.append(c.risk_level.in_(spec.risk_levels))
    if spec.tags:
        conditions.append(customers.tags_condition(spec.tags, t))
    if spec.upload_id is not None:
        upload = db.session.get(AudienceUpload, spec.upload_id)
        r = AudienceUploadRow.__table__.c
        key = c.crm_id if upload is not None and upload.kind == "crm_id" else c.mobile
        conditions.append(key.in_(select(r.value).where(r.upload_id == spec.upload_id)))
    return conditions


# Up to this many branches (or any list of serving staff or uploaded list) the audience is
# small: the cap then looks up only its customers' sends through the recipients' customer
# index, instead of counting every recent send of the category.
NARROW_BRANCHES = 10


def _is_narrow(spec: AudienceSpec, unit: Unit) -> bool:
    if spec.managers or spec.upload_id is not None or scope_branch_ids(unit) is not None:
        return True
    return 0 < len(spec.branches) <= NARROW_BRANCHES


def _capped(
    spec: AudienceSpec,
    *,
    unit: Unit,
    category: str,
    send_at: datetime,
    exclude_message_id: int | None,
):
    """The customers the category's frequency cap leaves out of a send at ``send_at``: a
    subquery of ``customer_id``, or None when the category is exempt or nobody is over."""
    cap = message_settings.cap_for(category)
    if cap is None:
        return None
    within = None
    if _is_narrow(spec, unit):
        scope_t = Customer.__table__.alias("cap_scope")
        within = select(scope_t.c.id).where(*_criteria(scope_t, spec, unit))
    return frequency_caps.capped(cap, send_at, category, exclude_message_id, within=within)


def _customer_rows(spec: AudienceSpec, *, unit: Unit, category: str, capped=None):
    """The customer audience with each row's first reason, the cap's from ``capped``."""
    t = Customer.__table__
    c = t.c
    q = select(
        c.id.label("customer_id"),
        cast(null(), Integer).label("user_id"),
        c.branch_id.label("unit_id"),
        c.mobile.label("mobile"),
        c.carrier.label("carrier"),
    ).where(*_criteria(t, spec, unit))
    whens = [
        (c.active.is_(False), "inactive"),
        (c.consent == "refused", "refused"),
        (c.consent != required_consent(category), _consent_reason(category)),
        (c.mobile_status != "valid", "invalid_mobile"),
    ]
    if capped is not None:
        # Joined as (customer_id, TRUE): the reason then depends on a constant, not on the
        # capped customer's id, and the planner rightly expects a few dozen (reason,
        # carrier) groups, so it counts them in its parallel workers.
        flagged = select(capped.c.customer_id, true().label("capped")).subquery("flagged")
        q = q.outerjoin(flagged, flagged.c.customer_id == c.id)
        whens.append((flagged.c.capped.is_(True), "cap"))
    return q.add_columns(case(*whens, else_=null()).label("reason"))


def _consent_reason(category: str) -> str:
    """Why a customer whose consent is not the one the category needs is left out."""
    return "undetermined" if required_consent(category) == "agreed" else "agreed"


def _eligible_before_cap(c, category: str) -> list:
    """The conditions of a customer (columns ``c``) that no reason before the cap excludes."""
    return [
        c.active.is_(True),
        c.consent == required_consent(category),
        c.mobile_status == "valid",
    ]


def _staff_rows(spec: AudienceSpec, *, unit: Unit):
    u = User.__table__.c
    q = select(
        cast(null(), Integer).label("customer_id"),
        u.id.label("user_id"),
        u.unit_id.label("unit_id"),
        u.mobile.label("mobile"),
        literal("").label("carrier"),
        case(
            (u.active.is_(False), "inactive"),
            (or_(func.length(u.mobile) != 11, ~u.mobile.like("1%")), "invalid_mobile"),
            else_=null(),
        ).label("reason"),
    )
    units = set(spec.units)
    allowed = scope_branch_ids(unit)
    if allowed is not None:
        units &= allowed
    return q.where(u.unit_id.in_(sorted(units)) if units else false())


def rows_select(
    spec: AudienceSpec,
    *,
    unit: Unit,
    category: str,
    send_at: datetime | None = None,
    exclude_message_id: int | None = None,
):
    """The audience as ``(customer_id, user_id, unit_id, mobile, carrier, reason)``.

    ``reason`` is NULL for a recipient. Among rows otherwise eligible that share a mobile,
    the lowest customer (or user) id receives and the others are ``duplicate``.
    ``send_at`` (naive UTC, default now) places the frequency-cap windows.
    """
    send_at = send_at or utcnow()
    if spec.kind == "staff":
        base = _staff_rows(spec, unit=unit)
    else:
        capped = _capped(
            spec,
            unit=unit,
            category=category,
            send_at=send_at,
            exclude_message_id=exclude_message_id,
        )
        base = _customer_rows(spec, unit=unit, category=category, capped=capped)
    inner = base.subquery("audience")
    first_eligible = func.row_number().over(
        partition_by=inner.c.mobile,
        order_by=(
            case((inner.c.reason.is_(None), 0), else_=1),
            inner.c.customer_id,
            inner.c.user_id,
        ),
    )
    reason = case(
        (and_(inner.c.reason.is_(None), first_eligible > 1), literal("duplicate")),
        else_=inner.c.reason,
    )
    return select(
        inner.c.customer_id,
        inner.c.user_id,
        inner.c.unit_id,
        inner.c.mobile,
        inner.c.carrier,
        reason.label("reason"),
    )


def message_rows(message: Message, send_at: datetime | None = None):
    """``rows_select`` for a stored message, as the sending area builds its recipients.

    The message's own earlier recipients never count towards its cap, so a rebuild after
    a crash sees the same audience."""
    return rows_select(
        parse(message.audience),
        unit=message.unit,
        category=message.category,
        send_at=send_at or message.schedule_at or utcnow(),
        exclude_message_id=message.id,
    )


# ------------------------------------------------------------------ the preview


@dataclass
class Preview:
    eligible: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    by_carrier: dict[str, int] = field(default_factory=dict)
    not_found: int = 0  # uploaded values that match no customer within scope
    send_at: datetime | None = None  # naive UTC the counts are for
    held_until: datetime | None = None  # quiet hours hold a non-urgent message until then
    cap: message_settings.Cap | None = None
    empty: bool = False  # no criterion given yet

    @property
    def excluded_total(self) -> int:
        return sum(self.excluded.values())

    def as_dict(self) -> dict:
        return {
            "eligible": self.eligible,
            "excluded": self.excluded,
            "by_carrier": self.by_carrier,
            "not_found": self.not_found,
            "held_until": self.held_until.isoformat() if self.held_until else None,
            "counted_at": utcnow().isoformat(timespec="seconds"),
        }


def preview(
    spec: AudienceSpec,
    *,
    unit: Unit,
    category: str,
    send_at: datetime | None = None,
    urgent: bool = False,
    exclude_message_id: int | None = None,
) -> Preview:
    """How many receive, how many are left out and why, in one grouped query (R-45, R-46).

    Quiet hours do not remove anyone: they move a non-urgent send to the end of the quiet
    period (``held_until``), and the cap windows follow that moment."""
    send_at = send_at or utcnow()
    result = Preview(excluded={r: 0 for r in REASONS if r != "agreed" or category == "inquiry"})
    held = message_settings.quiet_hold(send_at, urgent)
    if held is not None:
        result.held_until = held
        send_at = held
    result.send_at = send_at
    result.cap = message_settings.cap_for(category) if spec.kind == "customers" else None
    if spec.is_empty:
        result.empty = True
        return result
    if spec.kind == "staff":
        counts = _counts_by_rows(spec, unit, category, send_at)
    else:
        counts = _customer_counts(spec, unit, category, send_at, exclude_message_id)
    for reason, carrier, n in counts:
        if reason is None:
            key = carrier or "default"
            result.eligible += n
            result.by_carrier[key] = result.by_carrier.get(key, 0) + n
        else:
            result.excluded[reason] = result.excluded.get(reason, 0) + n
    if spec.kind == "customers" and spec.upload_id is not None:
        result.not_found = _not_found(spec, unit)
    return result


def _counts_by_rows(spec, unit, category, send_at):
    """(reason, carrier, n) straight from ``rows_select``: for small audiences (staff)."""
    rows = rows_select(spec, unit=unit, category=category, send_at=send_at).subquery("rows")
    return db.session.execute(
        select(rows.c.reason, rows.c.carrier, func.count()).group_by(rows.c.reason, rows.c.carrier)
    ).all()


def _customer_counts(spec, unit, category, send_at, exclude_message_id):
    """(reason, carrier, n) for a customer audience, equal to counting ``rows_select`` but
    without its window over every row, so a million customers count in under a second.

    1. every row's first reason (or none), grouped: one parallel scan of the customers,
       the capped ones (a kept list, ``frequency_caps``) joined in;
    2. the numbers shared by several customers: for a company-wide audience from
       ``shared_mobiles`` (kept by the import; else from the mobile index), for a
       branch-sized one from its own rows. Among the eligible rows with such a number, all
       but the lowest id's are duplicates, as in ``rows_select``.
    """
    pg = db.session.get_bind().dialect.name == "postgresql"
    if pg:
        # Room for the grouping in memory (the default 4 MB spills to disk at 1M rows), and
        # no JIT compilation: it costs more (~150 ms) than it saves here.
        db.session.execute(text("SET LOCAL work_mem = '64MB'"))
        db.session.execute(text("SET LOCAL jit = off"))
    capped = _capped(
        spec,
        unit=unit,
        category=category,
        send_at=send_at,
        exclude_message_id=exclude_message_id,
    )
    base = _customer_rows(spec, unit=unit, category=category, capped=capped).subquery("base")
    grouped = db.session.execute(
        select(base.c.reason, base.c.carrier, func.count()).group_by(base.c.reason, base.c.carrier)
    ).all()
    counts = {(reason, carrier): n for reason, carrier, n in grouped}
    if not any(reason is None for reason, _c in counts):
        return [(r, c, n) for (r, c), n in counts.items()]
    dup_rows = _duplicates_by_rows(base, spec, unit, pg)
    for carrier, duplicates in dup_rows:
        counts[(None, carrier)] -= duplicates
        counts[("duplicate", carrier)] = counts.get(("duplicate", carrier), 0) + duplicates
    return [(r, c, n) for (r, c), n in counts.items() if n]


def _duplicates_by_rows(base, spec, unit, pg: bool) -> list:
    """(carrier, duplicates) from the audience's own rows ``base``: for a branch-sized
    audience, or while ``shared_mobiles`` is not current."""
    if _is_narrow(spec, unit):
        # A branch-sized audience finds its shared numbers among its own rows.
        in_shared = base.c.mobile.in_(
            select(base.c.mobile)
            .where(base.c.reason.is_(None))
            .group_by(base.c.mobile)
            .having(func.count() > 1)
        )
    else:
        shared = _shared_mobiles(pg)
        if not shared:
            return []
        if pg:
            in_shared = base.c.mobile == any_(bindparam("shared", shared, type_=ARRAY(String)))
        else:
            in_shared = base.c.mobile.in_(shared)
    shared_rows = (
        select(
            base.c.carrier.label("carrier"),
            func.row_number()
            .over(partition_by=base.c.mobile, order_by=base.c.customer_id)
            .label("rn"),
        )
        .where(base.c.reason.is_(None), in_shared)
        .subquery("shared_rows")
    )
    return db.session.execute(
        select(shared_rows.c.carrier, func.count())
        .where(shared_rows.c.rn > 1)
        .group_by(shared_rows.c.carrier)
    ).all()


def _shared_mobiles(pg: bool) -> list[str]:
    """Every mobile more than one customer has: from ``shared_mobiles`` while the import's
    count is current; else counted, on PostgreSQL in index order from ix_customers_mobile
    (an index-only scan and a streaming count, no hash table of a million numbers)."""
    if customers.shared_mobiles_current():
        return list(db.session.execute(select(SharedMobile.mobile)).scalars())
    c = Customer.__table__.c
    query = select(c.mobile).group_by(c.mobile).having(func.count() > 1)
    if pg:
        db.session.execute(text("SET LOCAL enable_hashagg = off"))
        try:
            return list(db.session.execute(query.order_by(c.mobile)).scalars())
        finally:
            db.session.execute(text("SET LOCAL enable_hashagg TO DEFAULT"))
    return list(db.session.execute(query).scalars())


def _not_found(spec: AudienceSpec, unit: Unit) -> int:
    upload = db.session.get(AudienceUpload, spec.upload_id)
    if upload is None:
        return 0
    r = AudienceUploadRow.__table__.c
    c = Customer.__table__.c
    key = c.crm_id if upload.kind == "crm_id" else c.mobile
    match = exists().where(key == r.value)
    allowed = scope_branch_ids(unit)
    if allowed is not None:
        match = match.where(c.branch_id.in_(sorted(allowed)))
    return db.session.execute(
        select(func.count())
        .select_from(AudienceUploadRow.__table__)
        .where(r.upload_id == upload.id, ~match)
    ).scalar_one()


# ------------------------------------------------------------------ uploaded lists


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ValidationError(_("The file is neither UTF-8 nor GBK text."))


def _looks_like_header(cell: str) -> bool:
    lowered = cell.lower()
    return any(
        word in lowered for word in ("crm", "mobile", "phone", "手机", "客户", "号码", "编号")
    )


def create_upload(*, author: User, filename: str, data: bytes, kind: str) -> AudienceUpload:
    """Store an uploaded list of CRM ids or mobiles, one per line (the first cell of a CSV
    line). Bad lines are reported and left out; a list with bad lines needs the author's
    confirmation (``confirm_upload``) before an audience may use it. A list without a single
    good value is refused and nothing is stored. The caller commits."""
    from app.services.customers import normalize_mobile

    if kind not in UPLOAD_KINDS:
        raise ValidationError(_("Choose whether the file holds CRM ids or mobiles."))
    if not data:
        raise ValidationError(_("The file is empty."))
    if len(data) > UPLOAD_MAX_BYTES:
        raise ValidationError(_("The file is larger than 20 MB."))
    lines = _decode(data).splitlines()
    if len(lines) > UPLOAD_MAX_LINES:
        raise ValidationError(_("The file has more than %(n)s lines.", n=UPLOAD_MAX_LINES))
    good: dict[str, None] = {}
    bad: list[dict] = []
    bad_count = duplicates = total = 0
    for number, line in enumerate(lines, start=1):
        cell = re.split(r"[,\t;]", line, maxsplit=1)[0].strip().strip('"').strip()
        if not cell:
            continue
        if number == 1 and _looks_like_header(cell):
            continue
        total += 1
        value = normalize_mobile(cell) if kind == "mobile" else cell
        valid = customers.MOBILE_RE.match(value) if kind == "mobile" else CRM_ID_RE.match(value)
        if not valid:
            bad_count += 1
            if len(bad) < BAD_LINES_KEPT:
                reason = _("not a mobile number") if kind == "mobile" else _("not a CRM id")
                bad.append({"line": number, "text": line[:60], "reason": reason})
            continue
        if value in good:
            duplicates += 1
            continue
        good[value] = None
    if not good:
        raise ValidationError(_("The file holds no valid line (%(n)s bad).", n=bad_count))
    upload = AudienceUpload(
        author_id=author.id,
        unit_id=author.unit_id,
        kind=kind,
        filename=(filename or "")[:200],
        total_lines=total,
        good_count=len(good),
        duplicate_count=duplicates,
        bad_count=bad_count,
        bad_lines=json.dumps(bad, ensure_ascii=False),
        confirmed=bad_count == 0,
        created_at=utcnow(),
    )
    db.session.add(upload)
    db.session.flush()
    values = list(good)
    for start in range(0, len(values), 5000):
        db.session.execute(
            insert(AudienceUploadRow),
            [{"upload_id": upload.id, "value": v} for v in values[start : start + 5000]],
        )
    audit.record(
        "audience_upload.created",
        actor=author,
        target=upload,
        details={
            "kind": kind,
            "filename": upload.filename,
            "good": len(good),
            "bad": bad_count,
            "duplicates": duplicates,
        },
    )
    return upload


def get_upload(upload_id: int, user: User) -> AudienceUpload:
    """An upload its author (or the author's unit) may use; NotFound otherwise."""
    upload = db.session.get(AudienceUpload, upload_id)
    if upload is None or (upload.author_id != user.id and upload.unit_id != user.unit_id):
        raise NotFound(_("The uploaded list was not found."))
    return upload


def confirm_upload(upload_id: int, *, actor: User) -> AudienceUpload:
    """The author accepts that only the good lines are used. The caller commits."""
    upload = get_upload(upload_id, actor)
    if upload.author_id != actor.id:
        raise PermissionDenied(_("Only the person who uploaded the list can confirm it."))
    if not upload.confirmed:
        upload.confirmed = True
        audit.record(
            "audience_upload.confirmed",
            actor=actor,
            target=upload,
            details={"good": upload.good_count, "bad": upload.bad_count},
        )
    return upload
