"""Browser: the head decides a template in place; the Market admin binds it to an API client
without leaving the page and rotates the key, which is shown once."""

from __future__ import annotations

import re

from tests.browser.conftest import screenshot
from tests.factories import make_api_client, make_template


def test_template_decided_then_bound_and_key_rotated(app, page, login, new_page):
    template = make_template(approve=False, name="到账通知")
    from app.extensions import db
    from app.services import templates

    templates.submit(template.id, template.author)
    db.session.commit()
    api_client, old_key = make_api_client(name="资金清算系统")

    login("bj_head")
    page.goto("/templates/pending")
    item = page.locator(f"#template-item-{template.id}")
    assert "{account}" in item.inner_text()
    screenshot(page, "templates-pending")
    item.locator("textarea[name=comment]").fill("同意")
    item.locator("button.primary").click()
    page.wait_for_selector(f"#template-item-{template.id}.decided")
    assert "您已批准该模板" in page.inner_text(f"#template-item-{template.id}")
    assert page.url.endswith("/templates/pending")  # decided in place

    admin = new_page()
    login("admin", target=admin)
    admin.goto(f"/admin/api-clients/{api_client.id}")
    bindings = admin.locator("#client-bindings")
    assert "未绑定任何模板" in bindings.inner_text()
    bindings.locator("select[name=template_id]").select_option(str(template.id))
    bindings.locator("button.primary").click()
    admin.wait_for_selector("#client-bindings .flash-success")
    assert "到账通知" in admin.inner_text("#client-bindings")
    assert admin.url.endswith(f"/admin/api-clients/{api_client.id}")
    screenshot(admin, "api-client")

    admin.once("dialog", lambda dialog: dialog.accept())
    admin.click("form[action$='/rotate'] button")
    admin.wait_for_selector("#api-key")
    new_key = admin.inner_text("#api-key")
    assert re.fullmatch(r"hxk_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", new_key) and new_key != old_key
    assert "仅在此显示一次" in admin.inner_text("main")
    screenshot(admin, "api-key-once")
    admin.goto(f"/admin/api-clients/{api_client.id}")
    assert new_key not in admin.content()
    assert not page.js_errors
