"""The CRM import in the browser: upload, the progress partial polling itself, the report."""

from __future__ import annotations

from tests.browser.conftest import screenshot
from tests.factories import make_crm_extract, make_crm_row


def test_upload_and_watch_the_import_finish(page, login, run_jobs, tmp_path):
    path = make_crm_extract(
        tmp_path / "customers_20261124.csv",
        [make_crm_row(f"C{i:04d}", name=f"客户{i}", mobile=f"139{i:08d}") for i in range(1, 41)]
        + [
            make_crm_row("C9001", mobile="1381234567"),
            make_crm_row("C9002", branch_code="XX01"),
            make_crm_row("C9003", mobile=""),
        ],
        encoding="gb18030",
    )
    login("admin")
    page.click("nav.mainnav >> text=CRM导入")
    page.click("text=导入CRM数据")
    page.set_input_files("input[type=file]", str(path))
    screenshot(page, "imports-upload")
    page.click("button[type=submit].primary")
    page.wait_for_url("**/imports/*")
    status = page.locator("#import-status")
    assert "排队中" in status.inner_text()
    assert status.get_attribute("hx-trigger") == "every 1s"
    assert run_jobs(["import"]) == 0
    page.wait_for_selector("#import-status:not([hx-trigger])")  # polled to the final state
    text = page.locator("#import-status").inner_text()
    assert "成功" in text and "新增客户" in text and "没有该代码的营业部" in text
    assert page.locator(".import-counts .count strong").first.inner_text() == "41"
    screenshot(page, "imports-report")
    page.click("nav.mainnav >> text=CRM导入")
    assert "customers_20261124.csv" in page.locator("table.import-runs").inner_text()
    screenshot(page, "imports-list")
    assert page.js_errors == []
