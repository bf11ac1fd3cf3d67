"""Demo customers for ``make run``: a generated CRM extract, imported like a real one.

Kept apart from ``seed_demo`` so that the test database template (built with
``seed_demo``) stays small; ``flask demo seed`` calls ``seed_demo_customers`` after it.
"""

from __future__ import annotations

import csv
import random
import tempfile
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select

from app.extensions import db
from app.models import Customer, ImportRun, Unit, User

DEMO_BRANCHES = ("BJ01", "SH01", "SZ01")
DEMO_TAGS = ("稳健", "积极", "科技", "消费", "医药", "新能源", "债券", "基金", "港股通", "两融")
# A handful of numbers the branches must verify: wrong length, a landline, a
# virtual-operator range, and one number given for two customers.
_PROBLEM_MOBILES = ("1381234567", "010-62345678", "17012345678", "13900001111", "13900001111")


def _names(count: int, rnd: random.Random) -> list[str]:
    try:
        from faker import Faker
    except ImportError:  # faker is a development dependency; fall back to a short list
        surnames, given = (
            "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗",
            "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚",
        )
        return [rnd.choice(surnames) + rnd.choice(given) + rnd.choice(given) for _ in range(count)]
    fake = Faker("zh_CN")
    fake.seed_instance(rnd.randrange(1 << 30))
    return [fake.name() for _ in range(count)]


def write_demo_csv(path: str | Path, *, customers: int = 300, seed: int = 2026) -> Path:
    """Write a realistic extract of ``customers`` rows over the demo branches.

    Serving staff are the active users of each branch; a few rows have no mobile (they
    are skipped, Art 20), a few carry problem numbers, about one in twenty is closed.
    """
    rnd = random.Random(seed)
    staff: dict[str, list[str]] = {}
    for code in DEMO_BRANCHES:
        staff[code] = list(
            db.session.execute(
                select(User.username)
                .join(Unit, Unit.id == User.unit_id)
                .where(Unit.code == code, User.active.is_(True))
                .order_by(User.username)
            ).scalars()
        )
    branches = [code for code in DEMO_BRANCHES if staff[code]]
    if not branches:
        raise ValueError("the demo branches BJ01/SH01/SZ01 have no users")
    names = _names(customers, rnd)
    problems = list(_PROBLEM_MOBILES)
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "crm_id",
                "name",
                "mobile",
                "branch_code",
                "manager",
                "opened_on",
                "risk_level",
                "tags",
                "status",
            ]
        )
        for i in range(customers):
            branch = branches[i % len(branches)]
            if i % 97 == 5:
                mobile = ""
            elif i % 41 == 7 and problems:
                mobile = problems.pop(0)
            else:
                mobile = (
                    rnd.choice(("138", "139", "135", "186", "189", "133", "177", "150"))
                    + f"{rnd.randrange(10**8):08d}"
                )
            opened = date(2026, 1, 1) - timedelta(days=rnd.randrange(1, 4000))
            writer.writerow(
                [
                    f"DEMO{i + 1:06d}",
                    names[i],
                    mobile,
                    branch,
                    rnd.choice(staff[branch]),
                    opened.isoformat(),
                    f"C{rnd.randint(1, 5)}",
                    ";".join(rnd.sample(DEMO_TAGS, rnd.choice((0, 1, 1, 2)))),
                    "closed" if rnd.random() < 0.05 else "active",
                ]
            )
    return path


def seed_demo_customers(customers: int = 300) -> ImportRun | None:
    """Import a generated extract when there are no customers yet; returns the run.

    After the import (everyone undetermined, Art 22) about half the customers are given
    the reply 'Y' and a few 'TD', through the consent service, so that messages have
    someone to reach and the consent history has something to show.
    """
    from app.services import consent, crm_import

    if db.session.execute(select(Customer.id).limit(1)).first():
        return None
    if not db.session.execute(select(Unit.id).where(Unit.code.in_(DEMO_BRANCHES))).first():
        return None
    with tempfile.TemporaryDirectory(prefix="crm-demo-") as tmp:
        path = write_demo_csv(Path(tmp) / "customers_demo.csv", customers=customers)
        run = crm_import.create_file_run(path, source="cli")
        db.session.commit()
        run = crm_import.run_import(run.id)
    if run.status != "succeeded":
        return run
    rnd = random.Random(27)
    ids = (
        db.session.execute(
            select(Customer.id)
            .where(Customer.active.is_(True), Customer.mobile_status == "valid")
            .order_by(Customer.id)
        )
        .scalars()
        .all()
    )
    for customer_id in ids:
        roll = rnd.random()
        if roll < 0.55:
            consent.agree_by_reply(customer_id, evidence="Y")
        elif roll < 0.62:
            consent.change_consent(
                customer_id, "refused", channel="sms_reply", actor=None, evidence="TD"
            )
    db.session.commit()
    return run
