"""Benchmark the audience preview (R-45) at 1,000,000 customers on PostgreSQL.

Builds a schema of its own in the database named by BENCH_DATABASE_URL (default: the
local test database), runs the real migrations and the demo seed into it, generates the
customers, their tags and a week of earlier sends with generate_series, then times the
preview queries the drafting page runs. Prints one JSON object and drops the schema.

    .venv/bin/python scripts/bench_audience.py [--customers 1000000] [--branches 100] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import config  # noqa: E402
from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402

TARGET_SECONDS = 1.0


def build(url: str, schema: str, customers: int, branches: int) -> dict:
    """Migrate and seed the schema, then generate the data set; returns generation timings."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    app = _app(url, schema)
    timings = {}
    with app.app_context():
        from flask_migrate import upgrade

        from app.services.demo import seed_demo

        upgrade(directory=str(ROOT / "migrations"))
        seed_demo()
        started = time.perf_counter()
        s = db.session
        s.execute(
            text(
                "INSERT INTO units (code, name, name_en, kind, is_market, is_research, is_finance, "
                "is_call_centre, active) SELECT 'B' || lpad(g::text, 4, '0'), '测试营业部' || g, "
                "'Bench branch ' || g, 'branch', false, false, false, false, true "
                "FROM generate_series(1, :n) g"
            ),
            {"n": branches},
        )
        s.execute(
            text("""
            INSERT INTO customers (crm_id, name, mobile, mobile_tail, mobile_status, carrier,
                branch_id, manager_id, awaiting_assignment, opened_on, risk_level, tags, active,
                consent, row_hash, created_at, updated_at)
            SELECT 'BC' || lpad(g::text, 9, '0'), '客户' || g,
                   m.mobile, right(m.mobile, 4),
                   CASE WHEN g % 100 = 0 THEN 'invalid' WHEN g % 100 = 1 THEN 'doubtful' ELSE 'valid' END,
                   -- the carrier follows the number, as the import derives it
                   (ARRAY['china_mobile', 'china_unicom', 'china_telecom'])[1 + right(m.mobile, 3)::int % 3],
                   b.ids[1 + g % array_length(b.ids, 1)], NULL, false, DATE '2024-01-02',
                   'C' || (1 + g % 7 % 5),
                   concat_ws(';', CASE WHEN g % 3 = 0 THEN '基金' END,
                             CASE WHEN g % 7 = 0 THEN '债券' END),
                   g % 50 <> 7,
                   CASE WHEN g % 10 < 7 THEN 'agreed' WHEN g % 10 = 7 THEN 'refused' ELSE 'undetermined' END,
                   '', now(), now()
            FROM generate_series(1, :n) g
            CROSS JOIN (SELECT array_agg(id ORDER BY id) AS ids FROM units WHERE kind = 'branch') b
            -- one customer in 50 shares the number of the one before (family accounts)
            CROSS JOIN LATERAL (SELECT '139' || lpad((CASE WHEN g % 50 = 3 THEN g - 1 ELSE g END)::text, 8, '0') AS mobile) m
        """),
            {"n": customers},
        )
        # The tags as the import keeps them: the CRM's ';'-joined string and one row each.
        s.execute(
            text(
                "INSERT INTO customer_tags (customer_id, tag) SELECT id, "
                "unnest(string_to_array(tags, ';')) FROM customers WHERE tags <> ''"
            )
        )
        # A heavy week of earlier market messages: five daily ones to a fifth of the customers
        # (the weekly cap of 5), and two of today's also to another fifth (the daily cap
        # of 2). The cap then excludes some and its aggregation has real work.
        s.execute(
            text("""
            INSERT INTO messages (unit_id, author_id, category, title, body, audience, status, urgent,
                version, route, route_article, created_at, updated_at, route_fallback, segments,
                audience_summary, rule_warnings, send_started_at)
            SELECT u.id, NULL, 'market', 'bench ' || k, 'bench', '{}', 'sent', false, 1, '', '',
                   now(), now(), false, 1, '{}', '[]',
                   timezone('UTC', now()) - ((k - 1) || ' days')::interval - interval '1 hour'
            FROM units u CROSS JOIN generate_series(1, 6) k WHERE u.code = 'BJ01'
        """)
        )
        s.execute(
            text("""
            INSERT INTO recipients (message_id, customer_id, user_id, unit_id, mobile, status, reason,
                segments, cost, attempts, gateway_ref, created_at)
            SELECT m.id, c.id, NULL, c.branch_id, c.mobile, 'delivered', '', 1, 0.05, 1, '',
                   m.send_started_at + interval '1 minute'
            FROM messages m
            JOIN customers c ON (c.id % 5 = 1 AND m.title <> 'bench 6')
                             OR (c.id % 5 = 0 AND m.title IN ('bench 1', 'bench 6'))
            WHERE m.title LIKE 'bench %'
        """)
        )
        # Advisory: one message yesterday to a third of the customers (a light week).
        s.execute(
            text("""
            INSERT INTO messages (unit_id, author_id, category, title, body, audience, status, urgent,
                version, route, route_article, created_at, updated_at, route_fallback, segments,
                audience_summary, rule_warnings, send_started_at)
            SELECT u.id, NULL, 'advisory', 'bench advisory', 'bench', '{}', 'sent', false, 1, '', '',
                   now(), now(), false, 1, '{}', '[]', timezone('UTC', now()) - interval '1 day'
            FROM units u WHERE u.code = 'RES'
        """)
        )
        s.execute(
            text("""
            INSERT INTO recipients (message_id, customer_id, user_id, unit_id, mobile, status, reason,
                segments, cost, attempts, gateway_ref, created_at)
            SELECT m.id, c.id, NULL, c.branch_id, c.mobile, 'delivered', '', 1, 0.05, 1, '',
                   m.send_started_at + interval '1 minute'
            FROM messages m JOIN customers c ON c.id % 3 = 0
            WHERE m.title = 'bench advisory'
        """)
        )
        s.commit()
        timings["generate_seconds"] = round(time.perf_counter() - started, 2)
        # What the CRM import and the recipient builds keep, counted whole: the numbers
        # several customers share, and each capped category's capped customers (the
        # daily recount; its time is what a settings change or the nightly task costs).
        from app.services import customers, frequency_caps

        started = time.perf_counter()
        customers.recount_shared_mobiles()
        s.commit()
        timings["shared_mobiles_recount_seconds"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        timings["capped_customers"] = frequency_caps.recount_all()
        timings["caps_recount_seconds"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        # As autovacuum leaves a settled table: statistics and the visibility map.
        conn = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        for table in (
            "units",
            "customers",
            "customer_tags",
            "messages",
            "recipients",
            "capped_customers",
            "shared_mobiles",
        ):
            conn.execute(text(f"VACUUM ANALYZE {table}"))
        conn.close()
        timings["analyze_seconds"] = round(time.perf_counter() - started, 2)
        db.session.remove()
        db.engine.dispose()
    engine.dispose()
    return timings


def _app(url: str, schema: str):
    cfg = type(
        "BenchConfig",
        (config.Config,),
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"options": f"-csearch_path={schema}"}},
            "REDIS_URL": "redis://unused",
        },
    )
    return create_app(cfg)


def measure(url: str, schema: str, repeat: int) -> dict:
    """Time the previews the drafting page asks for; each case best and worst of ``repeat``."""
    from app.models import Unit
    from app.services import audience
    from app.timeutil import utcnow

    app = _app(url, schema)
    results = {}
    with app.app_context():
        s = db.session
        branch_ids = list(s.execute(select(Unit.id).where(Unit.kind == "branch")).scalars())
        ops = s.execute(select(Unit).where(Unit.code == "OPS")).scalar_one()
        one = s.execute(select(Unit).where(Unit.code == "B0001")).scalar_one()
        noon = utcnow().replace(hour=4, minute=0)  # 12:00 Asia/Shanghai: outside quiet hours
        cases = {
            "hq_notice_all_branches": (ops, "notice", {"branches": branch_ids}),
            "hq_market_all_branches_with_cap": (ops, "market", {"branches": branch_ids}),
            "hq_advisory_all_branches_light_week": (ops, "advisory", {"branches": branch_ids}),
            "hq_market_tag_filter": (ops, "market", {"branches": branch_ids, "tags": ["基金"]}),
            "hq_market_risk_filter": (
                ops,
                "market",
                {"branches": branch_ids, "risk_levels": ["C4", "C5"]},
            ),
            "one_branch_market": (one, "market", {"branches": [one.id]}),
        }
        for name, (unit, category, criteria) in cases.items():
            spec = audience.parse({"kind": "customers", **criteria})
            times, preview = [], None
            for _ in range(repeat):
                started = time.perf_counter()
                preview = audience.preview(spec, unit=unit, category=category, send_at=noon)
                times.append(time.perf_counter() - started)
                s.rollback()
            results[name] = {
                "best_seconds": round(min(times), 3),
                "worst_seconds": round(max(times), 3),
                "eligible": preview.eligible,
                "excluded": preview.excluded,
                "under_target": max(times) < TARGET_SECONDS,
            }
        results["build_recount"] = _build_recount(s)
        db.session.remove()
        db.engine.dispose()
    return results


def _build_recount(s) -> dict:
    """What a recipient build of a capped category adds: recounting the capped list for
    the customers it queued, under the category's lock (rolled back here). Timed for a
    large build (400,000 customers, today's first market message: the whole category is
    recounted) and a branch-sized one (10,000 of them)."""
    from app.models import Message
    from app.services import frequency_caps
    from app.timeutil import utcnow

    message_id = s.execute(select(Message.id).where(Message.title == "bench 1")).scalar_one()
    out = {}
    for name, queued in (("large_400000", 400_000), ("branch_10000", 10_000)):
        if queued < frequency_caps.WHOLE_RECOUNT_FROM:
            # The message's first 10,000 recipients stand for a branch-sized build.
            s.execute(
                text(
                    "UPDATE recipients SET status = 'queued' WHERE id IN (SELECT id FROM "
                    "recipients WHERE message_id = :m ORDER BY id LIMIT :n)"
                ),
                {"m": message_id, "n": queued},
            )
        started = time.perf_counter()
        frequency_caps.lock("market")
        capped = frequency_caps.recount_after_build("market", message_id, queued, utcnow())
        out[name] = {"capped": capped, "seconds": round(time.perf_counter() - started, 2)}
        s.rollback()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--branches", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the schema for inspection")
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
        "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    if not url.startswith("postgresql"):
        print("the audience benchmark needs PostgreSQL (BENCH_DATABASE_URL)", file=sys.stderr)
        return 2
    schema = f"bench_audience_{uuid.uuid4().hex[:8]}"
    report = {
        "customers": args.customers,
        "branches": args.branches,
        "schema": schema,
        "target_seconds": TARGET_SECONDS,
    }
    try:
        report.update(build(url, schema, args.customers, args.branches))
        cases = measure(url, schema, args.repeat)
        report["build_recount"] = cases.pop("build_recount")
        report["cases"] = cases
        report["all_under_target"] = all(c["under_target"] for c in report["cases"].values())
    finally:
        if not args.keep:
            engine = create_engine(url)
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            engine.dispose()
    print(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    return 0 if report.get("all_under_target") else 1


if __name__ == "__main__":
    sys.exit(main())
