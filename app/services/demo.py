"""Demo organisation and users for ``make run`` and the browser tests (issue #2, item 9)."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Unit, User
from app.services import org

DEMO_PASSWORD = "Demo-2026"

# code, name, English name, kind, flags
DEMO_UNITS = [
    ("MKT", "市场业务部", "Market Business Dept", "hq", {"is_market": True}),
    ("RES", "研究发展部", "Research Dept", "hq", {"is_research": True}),
    ("FIN", "计划财务部", "Finance Dept", "hq", {"is_finance": True}),
    ("CC", "呼叫中心", "Call Centre", "hq", {"is_call_centre": True}),
    ("OPS", "运营管理部", "Operations Dept", "hq", {}),
    ("BJ01", "北京营业部", "Beijing Branch", "branch", {}),
    ("SH01", "上海营业部", "Shanghai Branch", "branch", {}),
    ("SZ01", "深圳营业部", "Shenzhen Branch", "branch", {}),
]

# username, display name, unit, roles, superior
DEMO_USERS = [
    ("admin", "市场管理员", "MKT", ["market_admin", "unit_head"], None),
    ("approver", "公司审批人", "MKT", ["company_approver"], None),
    ("research_head", "研究部负责人", "RES", ["unit_head", "research_reviewer"], None),
    ("research_staff", "研究员", "RES", ["staff_sender"], "research_head"),
    ("finance", "财务专员", "FIN", ["finance"], None),
    ("callcenter", "呼叫中心坐席", "CC", ["call_centre_agent"], None),
    ("auditor", "审计员", "MKT", ["auditor"], None),
    ("ops_head", "运营部负责人", "OPS", ["unit_head"], None),
    ("ops_staff", "运营专员", "OPS", ["staff_sender"], "ops_head"),
    ("bj_head", "北京营业部总经理", "BJ01", ["unit_head"], None),
    ("bj_staff", "北京客户经理", "BJ01", ["staff_sender"], "bj_head"),
    ("sh_head", "上海营业部总经理", "SH01", ["unit_head"], None),
    ("sh_staff", "上海客户经理", "SH01", ["staff_sender"], "sh_head"),
    ("sz_head", "深圳营业部总经理", "SZ01", ["unit_head"], None),
    ("sz_staff", "深圳客户经理", "SZ01", ["staff_sender"], "sz_head"),
]


def seed_demo() -> bool:
    """Create the demo units and users when the database has no users; True if it seeded.

    Demo users skip the forced password change so trainers can log straight in.
    """
    roles = org.ensure_roles()
    if db.session.execute(select(User.id).limit(1)).first():
        db.session.commit()
        return False
    units: dict[str, Unit] = {}
    for code, name, name_en, kind, flags in DEMO_UNITS:
        units[code] = org.create_unit(code=code, name=name, kind=kind, name_en=name_en, **flags)
    users: dict[str, User] = {}
    for username, display, unit_code, role_codes, superior in DEMO_USERS:
        users[username] = org.create_user(
            username=username,
            display_name=display,
            unit=units[unit_code],
            password=DEMO_PASSWORD,
            roles=[roles[c] for c in role_codes],
            superior=users.get(superior) if superior else None,
            must_change_password=False,
        )
    db.session.commit()
    return True
