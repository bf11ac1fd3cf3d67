"""The approval route (R-42), article by article, with the self-approval fallback."""

import pytest

from app.services.routing import Directory, UnitFacts, route

BRANCH = UnitFacts(10, "branch")
OTHER_BRANCH = UnitFacts(11, "branch")
HQ_OPS = UnitFacts(20, "hq")
RESEARCH = UnitFacts(30, "hq", is_research=True)
MARKET = UnitFacts(40, "hq", is_market=True)

DIRECTORY = Directory(
    heads={10: (101, 102), 11: (111,), 20: (201,), 30: (301,), 40: (401,)},
    research_reviewers=(301, 302),
    research_unit_id=30,
    market_unit_id=40,
)
STAFF = 999  # an author who approves nothing


def test_art_8_hq_department_goes_to_its_heads():
    r = route(HQ_OPS, "notice", STAFF, DIRECTORY)
    assert (r.group, r.unit_id, r.article, r.approver_ids, r.fallback) == (
        "unit_heads",
        20,
        "Art 8",
        (201,),
        False,
    )


@pytest.mark.parametrize("category", ["notice", "market", "account", "internal"])
def test_art_9_branch_messages_go_to_the_branch_heads(category):
    r = route(BRANCH, category, STAFF, DIRECTORY)
    assert (r.group, r.unit_id, r.article, r.approver_ids) == (
        "unit_heads",
        10,
        "Art 9",
        (101, 102),
    )
    assert r.permission == "message.approve"


def test_art_9_branch_advisory_goes_to_research_reviewers():
    r = route(BRANCH, "advisory", STAFF, DIRECTORY)
    assert (r.group, r.unit_id, r.article, r.approver_ids) == (
        "research_reviewers",
        30,
        "Art 9",
        (301, 302),
    )
    assert r.permission == "message.review_advisory"


@pytest.mark.parametrize("category", ["notice", "market", "advisory", "internal"])
def test_art_14_research_messages_go_to_the_research_head(category):
    r = route(RESEARCH, category, STAFF, DIRECTORY)
    assert (r.group, r.unit_id, r.article, r.approver_ids) == (
        "research_head",
        30,
        "Art 14",
        (301,),
    )


def test_art_14_advisory_product_issue_goes_to_the_research_head_from_anywhere():
    r = route(BRANCH, "product", STAFF, DIRECTORY)
    assert (r.group, r.article) == ("research_head", "Art 14")


def test_the_author_is_left_out_of_the_group():
    r = route(BRANCH, "market", 101, DIRECTORY)  # a deputy remains
    assert r.approver_ids == (102,) and not r.fallback
    r = route(BRANCH, "advisory", 301, DIRECTORY)  # the head reviews no own advisory
    assert r.approver_ids == (302,)


def test_only_approver_as_author_falls_back_to_the_market_head():
    r = route(OTHER_BRANCH, "notice", 111, DIRECTORY)
    assert (r.group, r.unit_id, r.approver_ids, r.fallback, r.article) == (
        "market_heads",
        40,
        (401,),
        True,
        "Art 9",
    )
    r = route(RESEARCH, "advisory", 301, DIRECTORY)
    assert (r.group, r.approver_ids, r.fallback, r.article) == (
        "market_heads",
        (401,),
        True,
        "Art 14",
    )
    r = route(HQ_OPS, "notice", 201, DIRECTORY)
    assert (r.group, r.fallback, r.article) == ("market_heads", True, "Art 8")


def test_a_unit_without_approvers_falls_back_too():
    lonely = UnitFacts(12, "branch")
    r = route(lonely, "market", STAFF, DIRECTORY)
    assert (r.group, r.approver_ids, r.fallback) == ("market_heads", (401,), True)


def test_the_market_head_as_only_approver_leaves_no_one():
    r = route(MARKET, "notice", 401, DIRECTORY)
    assert r.group == "market_heads" and r.approver_ids == () and r.fallback
