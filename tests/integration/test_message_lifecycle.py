"""The life of a message (R-40 to R-48): routes per article, who may decide, content rules,
category restrictions, edit-after-approval voiding, cancel, and the bad-input list."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditLog, Message, MessageApproval
from app.services import messages as svc
from app.services import rules
from app.services.errors import Conflict, PermissionDenied, ValidationError
from app.timeutil import utcnow
from tests.factories import make_customer, make_message, make_user, unit


@pytest.fixture(autouse=True)
def customers(app):
    """Two agreed customers in each branch, so every audience has recipients."""
    for code in ("BJ01", "SH01"):
        make_customer(branch_code=code)
        make_customer(branch_code=code)


def _counts():
    return (
        db.session.execute(select(func.count()).select_from(Message)).scalar(),
        db.session.execute(select(func.count()).select_from(MessageApproval)).scalar(),
        db.session.execute(select(func.count()).select_from(AuditLog)).scalar(),
    )


def _draft(**kw):
    defaults = {
        "title": "t",
        "body": "本周市场回顾",
        "category": "market",
        "audience": {"kind": "customers", "branches": [unit("BJ01").id]},
    }
    defaults.update(kw)
    return svc.DraftInput(**defaults)


@pytest.mark.parametrize(
    "author,category,route,unit_code,article,approvers",
    [
        ("ops_staff", "notice", "unit_heads", "OPS", "Art 8", ["ops_head"]),
        ("bj_staff", "market", "unit_heads", "BJ01", "Art 9", ["bj_head"]),
        ("bj_staff", "account", "unit_heads", "BJ01", "Art 9", ["bj_head"]),
        ("bj_staff", "advisory", "research_reviewers", "RES", "Art 9", ["research_head"]),
        ("research_staff", "advisory", "research_head", "RES", "Art 14", ["research_head"]),
        ("research_staff", "notice", "research_head", "RES", "Art 14", ["research_head"]),
        (
            "bj_head",
            "market",
            "market_heads",
            "MKT",
            "Art 9",
            ["admin"],
        ),  # the only approver wrote it
        ("research_head", "advisory", "market_heads", "MKT", "Art 14", ["admin"]),
    ],
)
def test_submission_routes_by_article(author, category, route, unit_code, article, approvers, user):
    message = make_message(author=author, category=category, submit=True)
    assert message.status == "pending"
    assert (message.route, message.route_unit_id, message.route_article) == (
        route,
        unit(unit_code).id,
        article,
    )
    assert message.route_fallback == (route == "market_heads")
    for username in approvers:
        assert svc.can_decide(user(username), message)
        assert message.id in [
            m.id for m in db.session.execute(svc.inbox_query(user(username))).scalars()
        ]
    assert not svc.can_decide(user(author), message)
    [row] = message.approvals
    assert (row.decision, row.route_article) == ("submit", article)
    assert db.session.execute(
        select(AuditLog).where(
            AuditLog.action == "message.submitted", AuditLog.target_id == str(message.id)
        )
    ).scalar_one()


def test_branch_advisory_lands_with_research_not_the_branch_head(user):
    message = make_message(author="bj_staff", category="advisory", submit=True)
    assert svc.inbox_count(user("research_head")) == 1
    assert svc.inbox_count(user("bj_head")) == 0
    with pytest.raises(PermissionDenied):
        svc.approve(message.id, user("bj_head"), message.version)


def test_nobody_approves_their_own_message_even_with_a_deputy(user):
    deputy = make_user(roles=("unit_head",), unit_code="BJ01", username="bj_deputy")
    message = make_message(author="bj_head", category="market", submit=True)
    assert (message.route, message.route_fallback) == ("unit_heads", False)
    assert svc.can_decide(deputy, message) and not svc.can_decide(user("bj_head"), message)
    with pytest.raises(PermissionDenied):
        svc.approve(message.id, user("bj_head"), message.version)
    assert svc.inbox_count(user("bj_head")) == 0
    svc.approve(message.id, deputy, message.version)
    assert message.status == "approved" and message.approved_by_id == deputy.id


def test_no_one_left_to_approve_refuses_submission(user):
    message = make_message(author="admin", category="notice")
    before = _counts()
    with pytest.raises(ValidationError):
        svc.submit(message.id, user("admin"))
    db.session.rollback()
    assert _counts() == before and db.session.get(Message, message.id).status == "draft"


def test_hq_departments_write_transactional_notices_only(user):
    assert svc.allowed_categories(unit("OPS")) == ("notice",)
    assert "advisory" in svc.allowed_categories(unit("RES"))
    assert "advisory" in svc.allowed_categories(unit("BJ01"))
    before = _counts()
    for category in ("advisory", "market", "account", "internal", "inquiry", "bogus"):
        with pytest.raises(PermissionDenied):
            svc.create_draft(user("ops_staff"), _draft(category=category))
        db.session.rollback()
    assert _counts() == before


def test_category_is_checked_again_on_submit(user):
    """A draft whose category the unit may not write (e.g. written before a change) cannot go."""
    message = make_message(author="ops_staff", category="notice")
    message.category = "advisory"  # as if the form had been forged around the draft check
    db.session.commit()
    with pytest.raises(PermissionDenied):
        svc.submit(message.id, user("ops_staff"))


def test_approve_reject_conflicts_and_permissions(user):
    message = make_message(author="bj_staff", category="market", submit=True)
    with pytest.raises(PermissionDenied):
        svc.approve(message.id, user("sh_head"), message.version)  # not routed to them
    with pytest.raises(PermissionDenied):
        svc.approve(message.id, user("bj_staff"), message.version)  # the author, no approver
    with pytest.raises(Conflict):
        svc.approve(message.id, user("bj_head"), message.version - 1 if message.version > 1 else 99)
    with pytest.raises(ValidationError):
        svc.reject(message.id, user("bj_head"), message.version, "  ")
    db.session.rollback()
    svc.approve(message.id, user("bj_head"), message.version, "ok")
    db.session.commit()
    before = _counts()
    with pytest.raises(Conflict):
        svc.approve(message.id, user("bj_head"), message.version)  # twice
    with pytest.raises(Conflict):
        svc.reject(message.id, user("bj_head"), message.version, "too late")
    db.session.rollback()
    assert _counts() == before
    assert [a.decision for a in message.approvals] == ["submit", "approve"]


def test_reject_returns_the_message_and_resubmission_routes_again(user):
    message = make_message(author="bj_staff", category="market", submit=True)
    svc.reject(message.id, user("bj_head"), message.version, "请补充风险提示")
    db.session.commit()
    assert message.status == "rejected"
    assert message.approvals[-1].comment == "请补充风险提示"
    svc.update(
        message.id, user("bj_staff"), _draft(body="本周市场回顾,投资有风险"), message.version
    )
    db.session.commit()
    assert message.status == "draft" and message.version == 2
    svc.submit(message.id, user("bj_staff"), 2)
    db.session.commit()
    assert message.status == "pending"
    assert [a.decision for a in message.approvals] == ["submit", "reject", "submit"]


def test_edit_after_approval_voids_it_and_routes_again(user):
    message = make_message(author="bj_staff", category="market", submit=True)
    opened = message.version
    svc.approve(message.id, user("bj_head"), opened)
    db.session.commit()
    svc.update(message.id, user("bj_staff"), _draft(body="改过的市场回顾"), opened)
    db.session.commit()
    assert message.status == "pending" and message.version == opened + 1
    assert (
        message.approved_at is None
        and message.approved_by_id is None
        and message.approved_version is None
    )
    assert [a.decision for a in message.approvals] == ["submit", "approve", "void", "submit"]
    actions = (
        db.session.execute(
            select(AuditLog.action)
            .where(AuditLog.target_type == "messages", AuditLog.target_id == str(message.id))
            .order_by(AuditLog.id)
        )
        .scalars()
        .all()
    )
    assert actions == [
        "message.created",
        "message.submitted",
        "message.approved",
        "message.edited",
        "message.approval_voided",
        "message.submitted",
    ]
    # The approver's page still shows the old version: approving it is refused.
    with pytest.raises(Conflict):
        svc.approve(message.id, user("bj_head"), opened)
    db.session.rollback()
    svc.approve(message.id, user("bj_head"), opened + 1)
    assert message.status == "approved" and message.approved_version == opened + 1


def test_editing_a_pending_message_makes_the_open_version_stale(user):
    message = make_message(author="bj_staff", category="market", submit=True)
    svc.update(message.id, user("bj_staff"), _draft(body="新版本"), message.version)
    db.session.commit()
    assert message.status == "pending" and message.version == 2
    with pytest.raises(Conflict):
        svc.approve(message.id, user("bj_head"), 1)
    with pytest.raises(Conflict):  # the author's own form is stale as well
        svc.update(message.id, user("bj_staff"), _draft(body="再改"), 1)
    with pytest.raises(PermissionDenied):
        svc.update(message.id, user("sh_staff"), _draft(body="别人改"), 2)


def test_content_rule_blocks_submission_and_names_the_rule(user):
    message = make_message(author="bj_staff", category="market", body="独家内幕消息,明日必涨")
    before = _counts()
    with pytest.raises(ValidationError) as err:
        svc.submit(message.id, user("bj_staff"))
    db.session.rollback()
    assert "内幕信息" in str(err.value.message) and "内幕消息" in str(err.value.message)
    assert _counts() == before and db.session.get(Message, message.id).status == "draft"


def test_warnings_travel_to_the_approver(user):
    message = make_message(
        author="bj_staff", category="notice", body="本月理财产品收益率说明会", submit=True
    )
    warnings = svc.warnings_of(message)
    assert [w["found"] for w in warnings] == ["收益率"]
    assert warnings[0]["label"].startswith("咨询用语")


def test_rules_run_again_on_approval(user):
    message = make_message(
        author="bj_staff", category="market", body="本周推荐关注新能源板块", submit=True
    )
    rules.create_rule(
        {"pattern": "新能源", "kind": "other", "action": "block", "note": "临时禁用词"},
        actor=user("admin"),
    )
    db.session.commit()
    with pytest.raises(ValidationError) as err:
        svc.approve(message.id, user("bj_head"), message.version)
    assert "临时禁用词" in str(err.value.message)
    db.session.rollback()
    assert db.session.get(Message, message.id).status == "pending"


def test_bad_input_changes_nothing(user):
    staff = user("bj_staff")
    before = _counts()
    bad = [
        _draft(body="中" * 700),  # past 10 segments
        _draft(schedule_at=utcnow() - timedelta(minutes=5)),  # schedule in the past
        _draft(body="{nickname}您好"),  # unknown placeholder
        _draft(audience={"kind": "customers", "branches": [unit("SH01").id]}),  # other branch
        _draft(audience={"kind": "customers", "branches": ["x"]}),
        _draft(title="t" * 201),
    ]
    for data in bad:
        with pytest.raises((ValidationError, PermissionDenied)):
            svc.create_draft(staff, data)
        db.session.rollback()
    assert _counts() == before


def test_empty_audience_refuses_submission(user):
    staff = user("bj_staff")
    nobody = make_message(author=staff, audience={"kind": "customers"})
    refused_only = make_message(
        author=staff,
        audience={"kind": "customers", "branches": [unit("BJ01").id], "risk_levels": ["C5"]},
    )
    before = _counts()
    for message in (nobody, refused_only):
        with pytest.raises(ValidationError):
            svc.submit(message.id, staff)
        db.session.rollback()
    assert _counts() == before


def test_schedule_that_passed_while_drafting_is_refused_on_submit(user):
    message = make_message(author="bj_staff", schedule_at=utcnow() + timedelta(hours=1))
    message.schedule_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    with pytest.raises(ValidationError):
        svc.submit(message.id, user("bj_staff"))


def test_cancel_before_sending_only(user):
    message = make_message(author="bj_staff", submit=True)
    with pytest.raises(PermissionDenied):
        svc.cancel(message.id, user("bj_head"))
    svc.cancel(message.id, user("bj_staff"), "不发了")
    db.session.commit()
    assert message.status == "cancelled"
    with pytest.raises(Conflict):
        svc.approve(message.id, user("bj_head"), message.version)
    with pytest.raises(Conflict):
        svc.cancel(message.id, user("bj_staff"))
    sent = make_message(author="bj_staff")
    sent.status = "sent"
    db.session.commit()
    with pytest.raises(Conflict):
        svc.cancel(sent.id, user("bj_staff"))
    with pytest.raises(Conflict):
        svc.update(sent.id, user("bj_staff"), _draft(), sent.version)


def test_save_and_submit_is_all_or_nothing(user):
    before = _counts()
    with pytest.raises(ValidationError):
        svc.save_and_submit(user("bj_staff"), _draft(body="代客理财,稳赚"))
    db.session.rollback()
    assert _counts() == before
    message = svc.save_and_submit(user("bj_staff"), _draft())
    db.session.commit()
    assert message.status == "pending" and message.segments == 1


def test_internal_notice_to_own_staff(user):
    user("bj_head").mobile = "13800000011"
    user("bj_staff").mobile = "13800000012"
    db.session.commit()
    message = make_message(author="bj_staff", category="internal", body="周五下午培训", submit=True)
    assert message.route == "unit_heads" and svc.summary_of(message)["eligible"] == 2
