"""``make bench-import``: time the CRM import at scale (issue 3 item 7).

Generates an extract of N customers (default 1,000,000) over the demo branches, then
imports it into a fresh database twice: the first import (all new) and a re-import of
the same file (all unchanged). Each import runs in a child process, so its peak memory
is the child's own ``ru_maxrss`` (what the operating system saw, C extensions and SQLite
page cache included, which tracemalloc would miss). Prints one JSON document.

Backends: SQLite always; PostgreSQL too when DATABASE_URL points at one. PostgreSQL gets
a schema of its own, dropped at the end; SQLite a temporary file.

    make bench-import BENCH_ARGS="--rows 200000"
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test make bench-import

Targets (2-core machine): first import under 60 s, re-import under 30 s, peak memory
under 500 MB.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = {"first_import_seconds": 60, "reimport_seconds": 30, "peak_memory_mb": 500}

# Other measurements at N customers register here: callables taking the application (its
# context pushed, both imports done) and returning a dict that is added to the backend's
# JSON under its name.
EXTRA_MEASUREMENTS: list[Callable] = []


def customer_search(app) -> dict:
    """The customer search over the imported customers (issue 3 item 7): the query shapes of
    scripts/bench_search.py, 10 runs each; reports the worst p95 (target 200 ms)."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        return {"skipped": "the search target is for PostgreSQL"}
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_search

    results = bench_search.run_queries(app, repeat=10, explain=False)
    name, worst = max(results.items(), key=lambda item: item[1]["p95_ms"])
    return {
        "worst_p95_ms": worst["p95_ms"],
        "worst_query": name,
        "queries": len(results),
        "target_ms": 200,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


EXTRA_MEASUREMENTS.append(customer_search)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国文辉力斌宇浩凯鹏晨欣怡子涵梓轩雨桐一诺思远嘉懿佳琪俊杰志强海燕春梅晓东玉兰红梅金凤德华"
PREFIXES = [
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "147",
    "150",
    "151",
    "152",
    "157",
    "158",
    "159",
    "178",
    "182",
    "183",
    "184",
    "187",
    "188",
    "198",
    "130",
    "131",
    "132",
    "155",
    "156",
    "166",
    "175",
    "176",
    "185",
    "186",
    "196",
    "133",
    "153",
    "173",
    "177",
    "180",
    "181",
    "189",
    "191",
    "199",
    "192",
]
BRANCH_STAFF = {
    "BJ01": ["bj_staff", "bj_head"],
    "SH01": ["sh_staff", "sh_head"],
    "SZ01": ["sz_staff", "sz_head"],
}
# The same preference tags as scripts/bench_search.py, so its tag queries find customers.
TAGS = [
    "基金",
    "港股",
    "两融",
    "期权",
    "债券",
    "理财",
    "科创板",
    "北交所",
    "ETF",
    "可转债",
    "新股",
    "养老",
]


def generate_csv(path: Path, rows: int, seed: int = 20261124) -> None:
    """A realistic extract: ~0.3% invalid mobiles, ~1% without a mobile, ~4% closed."""
    rnd = random.Random(seed)
    branches = list(BRANCH_STAFF)
    start = date(2000, 1, 1).toordinal()
    span = date(2025, 12, 31).toordinal() - start
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
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
        for i in range(1, rows + 1):
            branch = branches[i % 3]
            r = rnd.random()
            if r < 0.01:
                mobile = ""
            elif r < 0.013:
                mobile = "1" + str(rnd.randrange(10**8, 10**9))  # ten digits: invalid
            else:
                mobile = rnd.choice(PREFIXES) + f"{rnd.randrange(10**8):08d}"
            name = rnd.choice(SURNAMES) + "".join(
                rnd.choice(GIVEN) for _ in range(rnd.choice((1, 2, 2)))
            )
            tags = ";".join(rnd.sample(TAGS, rnd.choice((0, 1, 1, 2, 3))))
            w.writerow(
                [
                    f"C{i:09d}",
                    name,
                    mobile,
                    branch,
                    rnd.choice(BRANCH_STAFF[branch]),
                    date.fromordinal(start + rnd.randrange(span)).isoformat(),
                    f"C{rnd.randint(1, 5)}",
                    tags,
                    "closed" if rnd.random() < 0.04 else "active",
                ]
            )


# ---------------------------------------------------------------- child process


def _app(url: str, schema: str | None):
    from app import create_app

    options = {
        "SQLALCHEMY_DATABASE_URI": url,
        "REDIS_URL": "redis://unused",
        "CRM_IMPORT_MAX_BYTES": 4 * 1024**3,
    }
    if schema:
        options["SQLALCHEMY_ENGINE_OPTIONS"] = {
            "connect_args": {"options": f"-csearch_path={schema}"}
        }
    return create_app(options)


def child_setup(url: str, schema: str | None) -> dict:
    from flask_migrate import upgrade

    from app.services.demo import seed_demo

    app = _app(url, schema)
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        seed_demo()
    return {}


def child_import(url: str, schema: str | None, path: str) -> dict:
    from app.extensions import db
    from app.services import crm_import

    app = _app(url, schema)
    with app.app_context():
        run = crm_import.create_file_run(path, source="cli")
        db.session.commit()
        phases: dict[str, float] = {}
        started = time.perf_counter()

        def progress(percent, rows, phase):
            phases.setdefault(phase, round(time.perf_counter() - started, 2))

        run = crm_import.run_import(run.id, on_progress=progress)
        seconds = time.perf_counter() - started
        return {
            "status": run.status,
            "error": run.error_message,
            "seconds": round(seconds, 2),
            "rows": run.rows_processed,
            "new": run.count_new,
            "updated": run.count_updated,
            "unchanged": run.count_unchanged,
            "skipped": run.count_skipped,
            "invalid": run.count_invalid,
            "flagged": run.count_flagged,
            "phase_started_at": phases,
        }


def child_extras(url: str, schema: str | None) -> dict:
    app = _app(url, schema)
    out = {}
    with app.app_context():
        for measure in EXTRA_MEASUREMENTS:
            out[measure.__name__] = measure(app)
    return out


def _child(args) -> None:
    handlers = {
        "setup": lambda: child_setup(args.url, args.schema),
        "import": lambda: child_import(args.url, args.schema, args.file),
        "extras": lambda: child_extras(args.url, args.schema),
    }
    print(json.dumps(handlers[args.child]()))


# ---------------------------------------------------------------- parent


def run_child(mode: str, url: str, schema: str | None, path: Path | None = None) -> dict:
    """Run one child; returns its JSON plus wall time and the child's peak RSS in MB."""
    cmd = [sys.executable, __file__, "--child", mode, "--url", url]
    if schema:
        cmd += ["--schema", schema]
    if path:
        cmd += ["--file", str(path)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"child {mode} failed:\n{err.decode(errors='replace')[-3000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["process_seconds"] = round(wall, 2)
    result["peak_memory_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: KiB
    return result


def bench_backend(name: str, url: str, path: Path, rows: int) -> dict:
    schema = None
    engine = None
    tmpdir = None
    if name == "postgresql":
        from sqlalchemy import create_engine, text

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    else:
        tmpdir = tempfile.TemporaryDirectory(prefix="bench-sqlite-")
        url = f"sqlite:///{tmpdir.name}/bench.db"
    try:
        run_child("setup", url, schema)
        first = run_child("import", url, schema, path)
        again = run_child("import", url, schema, path)
        extras = run_child("extras", url, schema) if EXTRA_MEASUREMENTS else {}
        extras.pop("process_seconds", None)
        extras.pop("peak_memory_mb", None)
        for r in (first, again):
            r["rows_per_second"] = round(rows / r["seconds"]) if r["seconds"] else None
        result = {
            "backend": name,
            "first_import": first,
            "reimport": again,
            **extras,
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        }
        result["meets_targets"] = (
            first["status"] == again["status"] == "succeeded"
            and first["seconds"] < TARGETS["first_import_seconds"]
            and again["seconds"] < TARGETS["reimport_seconds"]
            and max(first["peak_memory_mb"], again["peak_memory_mb"]) < TARGETS["peak_memory_mb"]
            and again["unchanged"] == first["new"]
        )
        return result
    finally:
        if engine is not None:
            from sqlalchemy import text

            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            engine.dispose()
        if tmpdir is not None:
            tmpdir.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("all", "sqlite", "postgresql"), default="all")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    database_url = os.environ.get("DATABASE_URL", "")
    backends = []
    if args.backend in ("all", "sqlite"):
        backends.append(("sqlite", ""))
    if args.backend in ("all", "postgresql"):
        if database_url.startswith("postgresql"):
            backends.append(("postgresql", database_url))
        elif args.backend == "postgresql":
            raise SystemExit("DATABASE_URL does not point at PostgreSQL")
    with tempfile.TemporaryDirectory(prefix="bench-crm-") as tmp:
        path = Path(tmp) / "customers_bench.csv"
        started = time.perf_counter()
        generate_csv(path, args.rows)
        report = {
            "rows": args.rows,
            "file_mb": round(path.stat().st_size / 1024**2, 1),
            "generate_seconds": round(time.perf_counter() - started, 1),
            "cpus": os.cpu_count(),
            # Other work on the machine slows every figure; read them with this.
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            "targets": TARGETS,
            "results": [],
        }
        for name, url in backends:
            report["results"].append(bench_backend(name, url, path, args.rows))
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
