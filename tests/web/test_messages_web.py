"""The messages, inbox and rules pages through the test client: permissions per route and
role, htmx partials with and without HX-Request, and the bad-input answers."""

import io
import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import ContentRule, Message
from app.services import message_settings
from tests.factories import make_customer, make_message, unit

ROUTES = [
    ("GET", "/messages/", "message.view"),
    ("GET", "/messages/new", "message.draft"),
    ("POST", "/messages/counters", "message.draft"),
    ("POST", "/messages/preview", "message.draft"),
    ("POST", "/messages/uploads/clear", "message.draft"),
    ("GET", "/inbox/", "message.view"),  # empty for those in no approval group
    ("GET", "/rules/", "admin.rules"),
    ("GET", "/rules/settings", "admin.rules"),
    ("POST", "/rules/try", "admin.rules"),
]
ROLES = {  # username -> what the demo user may do
    "bj_staff": {"message.view", "message.draft"},
    "bj_head": {"message.view", "message.draft"},
    "research_head": {"message.view", "message.draft"},
    "admin": {"message.view", "message.draft", "admin.rules"},
    "auditor": {"message.view"},
    "finance": set(),
    "callcenter": set(),
    "approver": set(),
}


@pytest.mark.parametrize("method,url,needs", ROUTES)
@pytest.mark.parametrize("username", sorted(ROLES))
def test_every_route_checks_permission(client, login_as, username, method, url, needs):
    login_as(username)
    response = client.get(url) if method == "GET" else client.post(url, {"body": "x"}, htmx=True)
    if needs in ROLES[username]:
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("method,url,_needs", ROUTES)
def test_anonymous_users_are_sent_to_login(client, method, url, _needs):
    response = client.get(url) if method == "GET" else client.post(url, {})
    assert response.status_code in (302, 400)  # 400: a POST without a session has no CSRF token
    if response.status_code == 302:
        assert "/login" in response.headers["Location"]


def _draft_form(**overrides):
    data = {
        "title": "周报",
        "body": "本周市场回顾",
        "category": "market",
        "branches": [str(unit("BJ01").id)],
        "action": "save",
    }
    data.update(overrides)
    return data


def _message_count():
    return db.session.execute(select(func.count()).select_from(Message)).scalar()


@pytest.fixture
def customers(app):
    return [make_customer(), make_customer(), make_customer(consent="refused")]


def test_draft_save_and_submit_through_the_form(client, login_as, customers):
    login_as("bj_staff")
    response = client.post("/messages/new", _draft_form(action="submit"))
    assert response.status_code == 302
    message = db.session.execute(select(Message)).scalar_one()
    assert message.status == "pending" and message.route_article == "Art 9"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'id="route-article">Art 9<' in page and "北京营业部总经理" in page
    assert "【和兴证券】本周市场回顾回T退订" in page


def test_forged_category_is_refused_and_nothing_is_saved(client, login_as, customers):
    login_as("ops_staff")
    form = client.get("/messages/new").get_data(as_text=True)
    assert 'value="advisory"' not in form  # the form offers notices only
    before = _message_count()
    response = client.post("/messages/new", _draft_form(category="advisory", action="submit"))
    assert response.status_code == 403
    assert "第十三条" in response.get_data(as_text=True)  # the error names the article
    assert _message_count() == before


@pytest.mark.parametrize(
    "overrides,status,text",
    [
        ({"body": "中" * 700}, 422, "10"),
        ({"schedule_at": "2020-01-01T09:00"}, 422, ""),
        ({"schedule_at": "tomorrow"}, 422, ""),
        ({"body": "独家内幕消息", "action": "submit"}, 422, "内幕信息"),
        ({"branches": [], "action": "submit"}, 422, ""),
        ({"branches": ["999999"]}, 422, ""),
    ],
)
def test_bad_input_rerenders_the_form_and_changes_nothing(
    client, login_as, customers, overrides, status, text
):
    login_as("bj_staff")
    before = _message_count()
    response = client.post("/messages/new", _draft_form(**overrides))
    html = response.get_data(as_text=True)
    assert response.status_code == status
    assert 'id="draft-error"' in html and text in html
    assert 'name="title" maxlength="200" value="周报"' in html  # the input is kept
    assert _message_count() == before


def test_branch_user_cannot_target_another_branch(client, login_as, customers):
    login_as("bj_staff")
    response = client.post("/messages/new", _draft_form(branches=[str(unit("SH01").id)]))
    assert response.status_code == 403 and _message_count() == 0


def test_live_counters_count_segments_as_one_types(client, login_as):
    login_as("bj_staff")
    short = client.post("/messages/counters", {"body": "你好", "category": "notice"}, htmx=True)
    html = short.get_data(as_text=True)
    assert "<html" not in html and 'id="draft-counters"' in html
    assert re.search(r'id="count-chars">8<', html)  # 【和兴证券】 + 你好
    assert re.search(r'id="count-segments"[^>]*>1<', html)
    long = client.post(
        "/messages/counters",
        {"body": "中" * 70, "category": "market", "preview_counts": '{"china_mobile": 100}'},
        htmx=True,
    )
    html = long.get_data(as_text=True)
    assert re.search(r'id="count-segments"[^>]*>2<', html) and "回T退订" in html
    assert 'id="count-recipients">100<' in html and "¥10.00" in html  # 2 × 100 × 0.05
    blocked = client.post(
        "/messages/counters", {"body": "访问 t.cn/x", "category": "notice"}, htmx=True
    ).get_data(as_text=True)
    assert "rule-block" in blocked and "t.cn" in blocked


def test_live_preview_counts_and_nudges_the_counters(client, login_as, customers):
    login_as("bj_staff")
    response = client.post(
        "/messages/preview", {"category": "market", "branches": [str(unit("BJ01").id)]}, htmx=True
    )
    html = response.get_data(as_text=True)
    assert "<html" not in html and 'id="preview-eligible">2<' in html
    assert 'data-reason="refused"><td>' in html
    assert response.headers["HX-Trigger-After-Swap"] == "audience-previewed"
    forged = client.post(
        "/messages/preview", {"category": "market", "branches": [str(unit("SH01").id)]}, htmx=True
    )
    assert "flash-error" in forged.get_data(as_text=True)


def test_list_serves_page_and_partial(client, login_as, customers):
    make_message(author="bj_staff", title="北京草稿")
    make_message(
        author="sh_staff",
        title="上海草稿",
        audience={"kind": "customers", "branches": [unit("SH01").id]},
    )
    login_as("bj_head")
    page = client.get("/messages/")
    html = page.get_data(as_text=True)
    assert "<html" in html and "北京草稿" in html and "上海草稿" not in html
    assert "HX-Request" in page.headers["Vary"]
    fragment = client.get("/messages/?mine=1", htmx=True).get_data(as_text=True)
    assert (
        "<html" not in fragment and 'id="message-list"' in fragment and "北京草稿" not in fragment
    )
    login_as("admin")
    assert "上海草稿" in client.get("/messages/").get_data(as_text=True)  # sees every unit


def test_message_page_scope_and_audience_partial(client, login_as, customers):
    message = make_message(author="bj_staff", submit=True)
    login_as("sh_staff")
    assert client.get(f"/messages/{message.id}").status_code == 404
    login_as("research_head")
    assert client.get(f"/messages/{message.id}").status_code == 404  # not routed to Research
    login_as("bj_head")
    page = client.get(f"/messages/{message.id}/audience")
    assert "<html" in page.get_data(as_text=True)
    fragment = client.get(f"/messages/{message.id}/audience", htmx=True).get_data(as_text=True)
    assert "<html" not in fragment and 'id="preview-eligible">2<' in fragment


def test_only_the_author_edits(client, login_as, customers):
    message = make_message(author="bj_staff")
    login_as("bj_head")
    response = client.post(
        f"/messages/{message.id}/edit", _draft_form(body="上司改的", version="1")
    )
    assert response.status_code == 403
    assert db.session.get(Message, message.id).body != "上司改的"


def test_edit_after_approval_through_the_form(client, login_as, customers, user):
    from app.services import messages as svc

    message = make_message(author="bj_staff", submit=True)
    svc.approve(message.id, user("bj_head"), message.version)
    db.session.commit()
    login_as("bj_staff")
    form = client.get(f"/messages/{message.id}/edit").get_data(as_text=True)
    assert '<p class="notice">' in form and 'name="version" value="1"' in form
    response = client.post(
        f"/messages/{message.id}/edit", _draft_form(body="修改后的内容", version="1")
    )
    assert response.status_code == 302
    db.session.expire_all()
    message = db.session.get(Message, message.id)
    assert message.status == "pending" and message.version == 2
    stale = client.post(f"/messages/{message.id}/edit", _draft_form(body="旧表单", version="1"))
    assert stale.status_code == 409


def test_inbox_approves_in_place_with_htmx(client, login_as, customers):
    message = make_message(author="bj_staff", submit=True)
    login_as("bj_head")
    inbox = client.get("/inbox/").get_data(as_text=True)
    assert f'id="inbox-item-{message.id}"' in inbox and 'id="badge-inbox-list_pending">1<' in inbox
    response = client.post(
        f"/inbox/{message.id}/approve", {"version": "1", "comment": "同意"}, htmx=True
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert f'id="inbox-item-{message.id}"' in html and "decision-done" in html
    assert 'hx-swap-oob="delete"' in html  # the badge goes: nothing else waits
    assert db.session.get(Message, message.id).status == "approved"
    again = client.post(f"/inbox/{message.id}/approve", {"version": "1"}, htmx=True)
    assert again.status_code == 409 and "flash-error" in again.get_data(as_text=True)


def test_inbox_without_htmx_redirects_and_refusals(client, login_as, customers):
    message = make_message(author="bj_staff", submit=True)
    login_as("sh_head")
    assert client.post(f"/inbox/{message.id}/approve", {"version": "1"}).status_code == 403
    login_as("bj_head")
    stale = client.post(f"/inbox/{message.id}/approve", {"version": "7"}, htmx=True)
    assert stale.status_code == 409
    no_reason = client.post(
        f"/inbox/{message.id}/reject", {"version": "1", "comment": ""}, htmx=True
    )
    assert no_reason.status_code == 422
    response = client.post(
        f"/inbox/{message.id}/reject", {"version": "1", "comment": "补充风险提示"}
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/inbox/")
    assert db.session.get(Message, message.id).status == "rejected"


def test_advisory_goes_to_research_inbox_not_the_branch_head(client, login_as, customers):
    message = make_message(author="bj_staff", category="advisory", body="本周策略观点", submit=True)
    login_as("bj_head")
    assert f"inbox-item-{message.id}" not in client.get("/inbox/").get_data(as_text=True)
    login_as("research_head")
    html = client.get("/inbox/").get_data(as_text=True)
    assert f"inbox-item-{message.id}" in html and "Art 9" in html


def test_upload_with_bad_lines_needs_confirmation(client, login_as, customers):
    login_as("bj_staff")
    data = {
        "upload_kind": "mobile",
        "upload_file": (io.BytesIO(f"{customers[0].mobile}\nnot-a-number\n".encode()), "list.csv"),
    }
    response = client.post("/messages/uploads", data, htmx=True, content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html and 'id="confirm-upload"' in html
    assert 'name="upload_id"' not in html  # not usable until confirmed
    upload_id = int(re.search(r"/uploads/(\d+)/confirm", html).group(1))
    confirmed = client.post(f"/messages/uploads/{upload_id}/confirm", {}, htmx=True).get_data(
        as_text=True
    )
    assert f'name="upload_id" value="{upload_id}"' in confirmed
    empty = client.post(
        "/messages/uploads",
        {"upload_kind": "mobile", "upload_file": (io.BytesIO(b"x\n"), "x.csv")},
        htmx=True,
        content_type="multipart/form-data",
    )
    assert empty.status_code == 422
    login_as("sh_staff")
    assert client.post(f"/messages/uploads/{upload_id}/confirm", {}).status_code == 404


def test_rules_admin_adds_toggles_and_refuses_bad_patterns(client, login_as):
    login_as("admin")
    before = db.session.execute(select(func.count()).select_from(ContentRule)).scalar()
    bad = client.post(
        "/rules/",
        {
            "pattern": "(unclosed",
            "is_regex": "1",
            "kind": "other",
            "action": "block",
            "note": "坏的",
        },
    )
    assert bad.status_code == 422
    assert (
        client.post(
            "/rules/", {"pattern": ".*", "is_regex": "1", "kind": "other", "action": "block"}
        ).status_code
        == 422
    )  # matches everything
    assert db.session.execute(select(func.count()).select_from(ContentRule)).scalar() == before
    assert (
        client.post(
            "/rules/", {"pattern": "荐股", "kind": "illegal", "action": "block", "note": "荐股"}
        ).status_code
        == 302
    )
    rule = db.session.execute(select(ContentRule).where(ContentRule.pattern == "荐股")).scalar_one()
    row = client.post(f"/rules/{rule.id}/active", {"active": "0"}, htmx=True).get_data(as_text=True)
    assert "<html" not in row and f'id="rule-{rule.id}"' in row
    db.session.expire_all()
    assert not db.session.get(ContentRule, rule.id).active
    tried = client.post("/rules/try", {"text": "代客理财", "category": "notice"}, htmx=True)
    assert "rule-block" in tried.get_data(as_text=True)


def test_settings_page_saves_and_refuses_bad_values(client, login_as):
    login_as("admin")
    form = {
        "cap_market_day": "3",
        "cap_market_week": "6",
        "quiet_start": "22:00",
        "quiet_end": "07:30",
        "rate_default": "0.06",
        "rate_china_mobile": "0.045",
        "opt_out_line": "回TD退订",
        "link_domains": "hxzq.com.cn\nhxzq.cn",
    }
    assert client.post("/rules/settings", form).status_code == 302
    assert message_settings.cap_for("market") == message_settings.Cap(3, 6)
    assert message_settings.cap_for("advisory") is None  # left empty: exempt
    assert message_settings.get("link_domains") == ["hxzq.cn", "hxzq.com.cn"]
    bad = client.post("/rules/settings", {**form, "quiet_start": "9pm"})
    assert bad.status_code == 422 and 'value="9pm"' in bad.get_data(as_text=True)  # input kept
    assert message_settings.get("quiet_hours") == {"start": "22:00", "end": "07:30"}


def test_inbox_is_empty_for_those_in_no_approval_group(client, login_as, customers):
    make_message(author="bj_staff", submit=True)
    login_as("bj_staff")
    html = client.get("/inbox/").get_data(as_text=True)
    assert 'id="inbox-empty"' in html and "inbox-item-" not in html
    nav = html.split('class="mainnav"')[1].split("</nav>")[0]
    assert 'href="/inbox/"' not in nav  # the nav entry is for approvers only
