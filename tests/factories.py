"""Plain factories for test data: ``make_<model>(**overrides)``."""

from __future__ import annotations

import itertools

from sqlalchemy import select

from app.extensions import db
from app.models import Role, Unit, User
from app.services import org

_seq = itertools.count(1)


def role(code: str) -> Role:
    return db.session.execute(select(Role).where(Role.code == code)).scalar_one()


def unit(code: str) -> Unit:
    return db.session.execute(select(Unit).where(Unit.code == code)).scalar_one()


def make_unit(**overrides) -> Unit:
    n = next(_seq)
    values = {"code": f"U{n:03d}", "name": f"测试部门{n}", "kind": "branch"}
    values.update(overrides)
    u = org.create_unit(**values)
    db.session.commit()
    return u


def make_user(
    *,
    roles=("staff_sender",),
    unit_code="BJ01",
    password="Initial-Pass-1",
    must_change_password=False,
    **overrides,
) -> User:
    n = next(_seq)
    values = {"username": f"user{n}", "display_name": f"测试用户{n}"}
    values.update(overrides)
    u = org.create_user(
        unit=unit(unit_code),
        password=password,
        roles=[role(r) for r in roles],
        must_change_password=must_change_password,
        **values,
    )
    db.session.commit()
    return u


def make_customer(**overrides):
    """A customer of BJ01 served by bj_staff, agreed, valid mobile, unless overridden.

    Writes the row directly (not through the import), for tests of other areas.
    """
    from datetime import date

    from app.models import Customer, CustomerTag, User
    from app.timeutil import utcnow

    n = next(_seq)
    branch = overrides.pop("branch", None) or unit(overrides.pop("branch_code", "BJ01"))
    manager = overrides.pop("manager", "__default__")
    if manager == "__default__":
        manager = (
            db.session.execute(
                select(User).where(User.unit_id == branch.id, User.username.like("%_staff"))
            )
            .scalars()
            .first()
        )
    mobile = overrides.pop("mobile", f"139{n:08d}"[-11:])
    now = utcnow()
    values = dict(
        crm_id=f"C{n:09d}",
        name=f"客户{n}",
        mobile=mobile,
        mobile_tail=mobile[-4:],
        mobile_status="valid",
        carrier="china_mobile",
        branch_id=branch.id,
        manager_id=manager.id if manager is not None else None,
        opened_on=date(2024, 1, 2),
        risk_level="C3",
        tags="",
        active=True,
        consent="agreed",
        created_at=now,
        updated_at=now,
    )
    values.update(overrides)
    customer = Customer(**values)
    db.session.add(customer)
    db.session.flush()
    for tag in customer.tag_list:
        db.session.add(CustomerTag(customer_id=customer.id, tag=tag))
    db.session.commit()
    return customer


def make_mobile_check(customer=None, **overrides):
    """An open verification-list entry (R-23) for ``customer`` (a new doubtful one if None)."""
    from app.models import MobileCheck
    from app.timeutil import utcnow

    if customer is None:
        customer = make_customer(
            mobile=overrides.pop("mobile", "1381234567"),
            mobile_status=overrides.get("reason", "invalid"),
        )
    values = dict(
        customer_id=customer.id,
        branch_id=customer.branch_id,
        mobile=customer.mobile,
        reason="invalid",
        status="open",
        created_at=utcnow(),
    )
    values.update(overrides)
    check = MobileCheck(**values)
    db.session.add(check)
    db.session.commit()
    return check


def make_approved_message(
    *, audience=None, category="notice", body="测试通知", unit_code="BJ01", urgent=True, **overrides
):
    """An approved message ready for the dispatcher (the sending area's tests), written
    directly: by default an urgent notice to every customer of its branch.

    ``audience`` is the audience JSON as a dict (default: the unit's own branch).
    """
    import json

    from app.models import Message, User
    from app.timeutil import utcnow

    u = unit(unit_code)
    author = (
        db.session.execute(select(User).where(User.unit_id == u.id).order_by(User.id))
        .scalars()
        .first()
    )
    now = utcnow()
    values = dict(
        unit_id=u.id,
        author_id=author.id if author else None,
        category=category,
        title="测试消息",
        body=body,
        audience=json.dumps(audience or {"kind": "customers", "branches": [u.id]}),
        status="approved",
        urgent=urgent,
        schedule_at=None,
        version=1,
        route="unit_heads",
        route_article="Art 9",
        submitted_at=now,
        approved_at=now,
        approved_version=1,
        created_at=now,
        updated_at=now,
    )
    values.update(overrides)
    message = Message(**values)
    db.session.add(message)
    db.session.commit()
    return message


def make_message(
    *,
    author="bj_staff",
    category="market",
    body="【测试】本周市场回顾",
    title="",
    audience=None,
    schedule_at=None,
    urgent=False,
    submit=False,
):
    """A message drafted through the service (and submitted when ``submit``), committed.

    ``author`` is a username or a User; the default audience is the author's own branch
    (or, for an HQ author, every branch named BJ01)."""
    from app.models import User
    from app.services import messages as message_service

    if isinstance(author, str):
        author = db.session.execute(select(User).where(User.username == author)).scalar_one()
    if audience is None:
        if category == "internal":
            audience = {"kind": "staff", "units": [author.unit_id]}
        else:
            branch_id = author.unit_id if author.unit.kind == "branch" else unit("BJ01").id
            audience = {"kind": "customers", "branches": [branch_id]}
    data = message_service.DraftInput(
        title=title,
        body=body,
        category=category,
        audience=audience,
        schedule_at=schedule_at,
        urgent=urgent,
    )
    message = message_service.create_draft(author, data)
    if submit:
        message_service.submit(message.id, author)
    db.session.commit()
    return message


def make_access_request(*, applicant="bj_staff", kind="new_account", **overrides):
    """A permission application prepared (and submitted) by ``applicant`` through the service.

    Defaults: a new staff-sender account for the applicant's unit, effective today.
    """
    from app.models import User as _User
    from app.services import access
    from app.timeutil import local_today

    actor = db.session.execute(select(_User).where(_User.username == applicant)).scalar_one()
    n = next(_seq)
    values = dict(
        person_name=f"申请人{n}",
        username=f"applied{n}",
        roles=["staff_sender"],
        data_scope="unit",
        reason="新入职",
        effective_date=local_today(),
    )
    if kind != "new_account":
        values.pop("username")
        values.pop("person_name")
        if kind == "deregister":
            values.pop("roles")
    values.update(overrides)
    req = access.prepare(actor, kind=kind, **values)
    db.session.commit()
    return req


def make_recipient(message, customer=None, **overrides):
    """A recipient row of ``message`` (default: submitted to ``customer``), written directly."""
    from app.models import Recipient
    from app.timeutil import utcnow

    customer = customer if customer is not None else make_customer()
    values = dict(
        message_id=message.id,
        customer_id=customer.id,
        unit_id=customer.branch_id,
        mobile=customer.mobile,
        status="submitted",
        reason="",
        segments=1,
        cost=0,
        attempts=1,
        batch_no=0,
        gateway_ref="",
        created_at=utcnow(),
        submitted_at=utcnow(),
    )
    values.update(overrides)
    recipient = Recipient(**values)
    db.session.add(recipient)
    db.session.commit()
    return recipient


CRM_HEADER = "crm_id,name,mobile,branch_code,manager,opened_on,risk_level,tags,status"


def make_crm_row(crm_id: str, **overrides) -> str:
    """One CSV line of a CRM extract: a valid active BJ01 customer served by bj_staff."""
    values = dict(
        name="张三",
        mobile="13812345678",
        branch_code="BJ01",
        manager="bj_staff",
        opened_on="2024-03-01",
        risk_level="C3",
        tags="",
        status="active",
    )
    values.update(overrides)
    cells = [crm_id] + [
        values[k]
        for k in (
            "name",
            "mobile",
            "branch_code",
            "manager",
            "opened_on",
            "risk_level",
            "tags",
            "status",
        )
    ]
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(cells)
    return buf.getvalue()


def make_crm_extract(path, rows, *, encoding="utf-8", header=CRM_HEADER):
    """Write a CRM extract (``rows``: lines from ``make_crm_row`` or raw text) to ``path``.

    ``encoding``: "utf-8", "utf-8-sig" (with BOM) or "gb18030", as the CRM exports them.
    """
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\r\n".join(([header] if header is not None else []) + list(rows)) + "\r\n"
    path.write_bytes(text.encode(encoding))
    return path


def make_template(
    *,
    author="bj_staff",
    approver="bj_head",
    name=None,
    category="notice",
    content="尊敬的{name}，您的账户{account}于今日入账{amount}元。",
    urgent=False,
    approve=True,
):
    """A message template written by ``author`` through the service, submitted and (when
    ``approve``) approved by ``approver`` along its route; committed."""
    from app.models import User
    from app.services import templates

    def _u(username):
        return db.session.execute(select(User).where(User.username == username)).scalar_one()

    writer = _u(author) if isinstance(author, str) else author
    data = templates.TemplateInput(
        name=name or f"模板{next(_seq)}", category=category, content=content, urgent=urgent
    )
    template = templates.create(writer, data)
    if approve:
        templates.submit(template.id, writer)
        templates.approve(template.id, _u(approver), template.version)
    db.session.commit()
    return template


def make_api_client(*, unit_code="BJ01", name=None, templates=(), rate=None, applicant=None):
    """An API client as an executed interface-user application creates it; returns
    ``(client, plain_key)``. The application row is written directly in its approved
    state (the access area's steps are tested there), then the client is created the way
    execution does, and ``templates`` are bound by the Market admin."""
    from app.models import AccessRequest, User
    from app.services import api_clients
    from app.timeutil import local_today, utcnow

    def _u(username):
        return db.session.execute(select(User).where(User.username == username)).scalar_one()

    u = unit(unit_code)
    admin = _u("admin")
    who = (
        _u(applicant)
        if applicant
        else db.session.execute(select(User).where(User.unit_id == u.id).order_by(User.id))
        .scalars()
        .first()
        or admin
    )
    now = utcnow()
    req = AccessRequest(
        kind="interface_user",
        status="approved",
        applicant_id=who.id,
        applicant_unit_id=u.id,
        person_name=name or f"接口系统{next(_seq)}",
        person_unit_id=u.id,
        person_post="",
        username="",
        role_codes="api_client",
        data_scope="unit",
        reason="系统对接",
        effective_date=local_today(),
        created_at=now,
        signed_by_id=admin.id,
        signed_at=now,
        approved_by_id=_u("approver").id,
        approved_at=now,
        rejected_step="",
        rejection_reason="",
        late=False,
    )
    db.session.add(req)
    db.session.flush()
    client, key = api_clients.create_client_for_request(req, admin)
    if rate is not None:
        client.rate_limit_per_minute = rate
    req.status, req.executed_by_id, req.executed_at = "executed", admin.id, now
    req.result_user_id = client.user_id
    for template in templates:
        api_clients.bind(client.id, template.id, admin)
    db.session.commit()
    return client, key
