"""Approved templates (R-15, R-42, R-43): variables, the approval route (once), voiding by an
edit, content rules, and filling with a client's values."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditLog, ContentRule
from app.services import templates
from app.services.errors import Conflict, PermissionDenied, ValidationError
from app.timeutil import utcnow
from tests.factories import make_template

CONTENT = "尊敬的{name}，您的账户{account}于今日入账{amount}元。"


def data(**overrides) -> templates.TemplateInput:
    values = {"name": "到账通知", "category": "notice", "content": CONTENT}
    values.update(overrides)
    return templates.TemplateInput(**values)


def test_variables_are_the_placeholders_other_than_name_and_branch():
    assert templates.variables_in(CONTENT) == ["account", "amount"]
    assert templates.variables_in("{branch}{name}") == []
    assert templates.variables_in("{a}{b}{a}") == ["a", "b"]


def test_fill_names_the_missing_or_extra_variable(app, db_backend):
    template = make_template(content=CONTENT)
    assert (
        templates.fill(template, {"account": "6225", "amount": 12.5})
        == "尊敬的{name}，您的账户6225于今日入账12.5元。"
    )
    cases = [
        ({"account": "6225"}, "x.amount", "amount"),
        ({"account": "6225", "amount": "1", "colour": "red"}, "x.colour", "colour"),
        ({"account": "6225", "amount": "1", "name": "张三"}, "x.name", "name"),
        ({"account": "6225", "amount": ""}, "x.amount", "amount"),
        ({"account": "6225", "amount": True}, "x.amount", "amount"),
        ({"account": "6225", "amount": ["1"]}, "x.amount", "amount"),
        ({"account": "6225", "amount": "1" * 41}, "x.amount", "amount"),
        ({"account": "62\n25", "amount": "1"}, "x.account", "account"),
        ({"account": "{name}", "amount": "1"}, "x.account", "account"),
    ]
    for values, field, named in cases:
        with pytest.raises(ValidationError) as caught:
            templates.fill(template, values, field="x")
        assert caught.value.details["field"] == field, values
        assert named in str(caught.value.message)
    with pytest.raises(ValidationError):
        templates.fill(template, ["account"], field="x")


@pytest.mark.parametrize(
    "author, approver_group, article",
    [
        ("bj_staff", "unit_heads", "Art 9"),  # a branch's notice: the branch head
        ("ops_staff", "unit_heads", "Art 8"),  # an HQ department's notice: its head
        ("research_staff", "research_head", "Art 14"),  # Research: the Research head
    ],
)
def test_a_template_takes_the_route_of_a_message(
    app, db_backend, user, author, approver_group, article
):
    template = templates.create(user(author), data())
    templates.submit(template.id, user(author))
    assert (template.status, template.route, template.route_article) == (
        "pending",
        approver_group,
        article,
    )


def test_a_branch_advisory_template_goes_to_research_review(app, db_backend, user):
    template = templates.create(
        user("bj_staff"), data(category="advisory", content="{name}您好，{stock}短期关注。")
    )
    templates.submit(template.id, user("bj_staff"))
    assert (template.route, template.route_article) == ("research_reviewers", "Art 9")
    assert templates.can_decide(user("research_head"), template)
    assert not templates.can_decide(user("bj_head"), template)


def test_approval_by_the_route_once_never_by_the_author(app, db_backend, user):
    head = user("bj_head")
    template = templates.create(head, data())
    templates.submit(template.id, head)
    # The head is the author: the route falls back to the Market heads (routing, R-42).
    assert template.route == "market_heads" and template.route_fallback
    with pytest.raises(PermissionDenied):
        templates.approve(template.id, head, template.version)
    with pytest.raises(Conflict):
        templates.approve(template.id, user("admin"), template.version + 1)  # not the version read
    templates.approve(template.id, user("admin"), template.version, "同意")
    assert template.is_approved and template.approved_by_id == user("admin").id
    with pytest.raises(Conflict):
        templates.approve(template.id, user("admin"), template.version)
    assert [a.decision for a in template.approvals] == ["submit", "approve"]


def test_rejection_needs_a_reason_and_goes_back_to_the_author(app, db_backend, user):
    template = templates.create(user("bj_staff"), data())
    templates.submit(template.id, user("bj_staff"))
    with pytest.raises(ValidationError):
        templates.reject(template.id, user("bj_head"), template.version, "  ")
    templates.reject(template.id, user("bj_head"), template.version, "金额写法不规范")
    assert template.status == "rejected"
    templates.update(
        template.id,
        user("bj_staff"),
        data(content="您的账户{account}入账{amount}元。"),
        template.version,
    )
    assert template.status == "draft" and template.version == 2


def test_editing_an_approved_template_voids_the_approval(app, db_backend, user):
    template = make_template()
    assert template.is_approved
    with pytest.raises(PermissionDenied):
        templates.update(template.id, user("bj_head"), data(), template.version)
    with pytest.raises(Conflict):
        templates.update(template.id, user("bj_staff"), data(), template.version - 1)
    templates.update(
        template.id,
        user("bj_staff"),
        data(content="您的账户{account}入账{amount}元。"),
        template.version,
    )
    db.session.commit()
    assert not template.is_approved and template.status == "pending" and template.version == 2
    assert template.approved_version is None and template.approved_by_id is None
    assert [a.decision for a in template.approvals] == ["submit", "approve", "void", "submit"]
    actions = (
        db.session.execute(
            select(AuditLog.action).where(AuditLog.target_type == "message_templates")
        )
        .scalars()
        .all()
    )
    assert "template.approval_voided" in actions


def test_checks_of_the_input(app, db_backend, user):
    author = user("bj_staff")
    for bad, field in [
        (data(name=""), "name"),
        (data(content=""), "content"),
        (data(content="金额{amount 元"), "content"),
        (data(content="金额 {amount} 元 }"), "content"),
        (data(content="".join(f"{{v{chr(97 + i)}}}" for i in range(11))), "content"),
        (data(content="长" * 700), "content"),
    ]:
        with pytest.raises(ValidationError) as caught:
            templates.create(author, bad)
        assert caught.value.details["field"] == field
    with pytest.raises(PermissionDenied):  # R-41, Art 13: an HQ department writes notices only
        templates.create(user("ops_staff"), data(category="market"))
    with pytest.raises(PermissionDenied):
        templates.create(user("bj_staff"), data(category="internal"))
    with pytest.raises(PermissionDenied):
        templates.create(user("approver"), data())


def test_a_blocking_content_rule_stops_submission_and_approval(app, db_backend, user):
    now = utcnow()
    template = templates.create(
        user("bj_staff"), data(content="您的账户{account}入账{amount}元，保本高收益。")
    )
    rule = ContentRule(
        pattern="保本高收益",
        is_regex=False,
        match_on="text",
        kind="illegal",
        action="block",
        active=True,
        note="承诺收益",
        created_at=now,
        updated_at=now,
    )
    db.session.add(rule)
    db.session.flush()
    with pytest.raises(ValidationError, match="承诺收益"):
        templates.submit(template.id, user("bj_staff"))
    rule.active = False
    templates.submit(template.id, user("bj_staff"))
    rule.active = True
    with pytest.raises(ValidationError, match="承诺收益"):
        templates.approve(template.id, user("bj_head"), template.version)
    assert template.status == "pending"


def test_lists_by_scope_and_pending_by_route(app, db_backend, user):
    bj = make_template()
    sh = make_template(author="sh_staff", approver="sh_head")
    waiting = make_template(approve=False)
    templates.submit(waiting.id, user("bj_staff"))
    ids = lambda q: [t.id for t in db.session.execute(q).scalars()]  # noqa: E731
    assert set(ids(templates.list_query(user("bj_staff")))) == {bj.id, waiting.id}
    assert set(ids(templates.list_query(user("admin")))) == {bj.id, sh.id, waiting.id}
    assert ids(templates.pending_query(user("bj_head"))) == [waiting.id]
    assert ids(templates.pending_query(user("sh_head"))) == []
    assert templates.pending_count(user("bj_head")) == 1
    assert [t.id for t in templates.approved_of_unit(bj.unit_id)] == [bj.id]
