"""A new account through the whole route in a real browser (R-10, R-11).

bj_head prepares the application (as the unit's head the preparation is the signature),
``approver`` approves it in place in the inbox, ``admin`` executes it and sees the initial
password once, and the new user logs in and must change it.
"""

from __future__ import annotations

import re
from datetime import timedelta

from app.extensions import db
from app.services import access
from app.timeutil import local_today
from tests.browser.conftest import ARTIFACTS, screenshot
from tests.factories import make_access_request, make_user


def test_new_account_from_application_to_first_login(page, login, new_page, user):
    def app_user(username):
        db.session.expire_all()
        return user(username)

    # 1. bj_head prepares the application.
    login("bj_head")
    page.click("nav.mainnav >> text=权限申请")
    page.click("text=新建申请")
    page.wait_for_selector("#access-form")
    page.fill("input[name=person_name]", "赵新人")
    page.fill("input[name=username]", "bj_zhao")
    page.fill("input[name=post]", "客户经理")
    page.check("input[name=roles][value=staff_sender]")
    page.fill("textarea[name=reason]", "新入职客户经理，需发送客户通知")
    screenshot(page, "access-01-form")
    page.click("button:has-text('提交申请')")
    page.wait_for_selector("h1:has-text('申请')")
    assert "等待公司审批" in page.locator(".access-decision").inner_text()
    assert "填写即视为签字" in page.locator(".access-timeline").inner_text()
    request_url = page.url
    request_id = int(re.search(r"/access/(\d+)", request_url).group(1))
    screenshot(page, "access-02-submitted-by-head")

    # 2. The company approver approves in place in the inbox.
    approver = new_page()
    login("approver", target=approver)
    approver.click("nav.mainnav >> text=待办权限申请")
    item = approver.locator(f"#access-decision-{request_id}")
    assert "赵新人" in approver.locator("#access-inbox-approve").inner_text()
    screenshot(approver, "access-03-approver-inbox")
    item.locator("button:has-text('公司审批通过')").click()
    approver.wait_for_selector(f"#access-decision-{request_id} >> text=已审批通过")
    assert "/access/inbox" in approver.url  # decided in place, no page change
    assert approver.locator("#badge-access-inbox").inner_text() == ""  # nothing waits any more
    screenshot(approver, "access-04-approved-in-place")

    # 3. The Market admin executes and sees the initial password once.
    admin = new_page()
    login("admin", target=admin)
    admin.click("nav.mainnav >> text=待办权限申请")
    admin.locator(f"#access-decision-{request_id} >> text=执行…").click()
    admin.wait_for_url(f"**/access/{request_id}/execute")
    assert admin.locator("header.topbar").count() == 1  # a whole page, not a page in the box
    screenshot(admin, "access-05-execute-screen")
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.click(".access-execute button:has-text('执行')")
    admin.wait_for_selector("#initial-password")
    password = admin.locator("#initial-password").inner_text().strip()
    assert len(password) >= 12
    screenshot(admin, "access-06-initial-password-once")
    admin.goto(f"/access/{request_id}/execute")
    assert password not in admin.content()
    assert "不能再次显示" in admin.locator(".access-execute").inner_text()
    admin.goto(request_url)
    assert password not in admin.content()
    assert "已执行" in admin.locator(".access-decision").inner_text()

    # The printable form carries every signature.
    admin.goto(f"/access/{request_id}/print")
    sheet = admin.locator(".paper").inner_text()
    assert "和兴证券短信服务管理系统操作权限申请/变更表" in sheet
    for name in ("北京营业部总经理", "公司审批人", "市场管理员"):
        assert name in sheet
    screenshot(admin, "access-07-print-screen")
    admin.emulate_media(media="print")
    admin.set_viewport_size({"width": 680, "height": 1000})  # A4's printable width (180 mm)
    screenshot(admin, "access-08-print-media")
    ARTIFACTS.mkdir(exist_ok=True)
    admin.pdf(path=str(ARTIFACTS / "access-print.pdf"), format="A4", prefer_css_page_size=True)
    admin.emulate_media(media="screen")
    admin.set_viewport_size({"width": 1280, "height": 900})

    # The admin's user page: the application and the role history of the new account.
    new_id = app_user("bj_zhao").id
    admin.goto(f"/admin/users/{new_id}")
    panel = admin.locator("#access-user-panel").inner_text()
    assert "2026" in panel and "发送员" in panel and "增加" in panel
    screenshot(admin, "access-10-user-page")

    # 4. The new user logs in and must change the initial password first.
    newcomer = new_page()
    newcomer.goto("/login")
    newcomer.fill("input[name=username]", "bj_zhao")
    newcomer.fill("input[name=password]", password)
    newcomer.click("button[type=submit].primary")
    newcomer.wait_for_url("**/password")
    assert "初始密码" in newcomer.locator(".notice").inner_text()
    newcomer.goto("/dashboard")
    newcomer.wait_for_url("**/password")
    screenshot(newcomer, "access-09-forced-change")
    newcomer.fill("input[name=current_password]", password)
    newcomer.fill("input[name=new_password]", "Zhao-Own-Pass-2026")
    newcomer.fill("input[name=confirm_password]", "Zhao-Own-Pass-2026")
    newcomer.click("button[type=submit].primary")
    newcomer.wait_for_url("**/dashboard")
    assert "赵新人" in newcomer.locator("main").inner_text()

    assert page.js_errors == []


def test_admin_dashboard_lists_open_and_late_deregistrations(page, login, user):
    late = make_user(display_name="迟办员工")
    waiting = make_user(display_name="待注销员工")
    done = make_access_request(
        applicant="bj_head",
        kind="deregister",
        target_user_id=late.id,
        effective_date=local_today() - timedelta(days=2),
        reason="调岗",
    )
    access.approve(user("approver"), done.id)
    access.execute(user("admin"), done.id)
    make_access_request(
        applicant="bj_head",
        kind="deregister",
        target_user_id=waiting.id,
        effective_date=local_today() - timedelta(days=1),
        reason="离职",
    )
    db.session.commit()
    login("admin")
    panel = page.locator("#access-deregistrations").inner_text()
    assert "待注销员工" in panel and "逾期" in panel and "迟办员工" in panel and "迟办" in panel
    screenshot(page, "access-11-dashboard-deregistrations")
    assert page.js_errors == []
