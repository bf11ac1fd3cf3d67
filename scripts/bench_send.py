"""Benchmark sending (issue 5): recipient building at 1,000,000 customers on PostgreSQL, and
our pipeline's rate into Kannel's fake SMSC against Kannel's own.

1. ``build``: an approved HQ notice to 1,000,000 customers (every branch); times
   ``sending.build_recipients`` (the INSERT ... SELECT from the audience select, the
   suppressed rows with their reasons, the batches). Goal: >= 100,000 recipients/s.
2. ``ours``: 100,000 recipients sent with SMS_MAX_RATE unlimited by real worker processes
   (``worker.py --no-fork --queues send``, as docs/sending.md recommends for send workers;
   ``--fork`` for RQ's fork-per-job) through the Kannel gateway, from the dispatcher's start
   until the fake SMSC has received the last one.
3. ``kannel``: the same number of the same messages posted straight to sendsms by a
   simple concurrent client (threads with keep-alive connections, as many as our workers
   have together), until the fake SMSC has them all. Goal: ours >= 80 % of Kannel's own.

Both send measurements use the same Kannel, the same text (UCS-2), the same dlr-mask
(``--dlr-mask``, default 0: no delivery reports, so the box measures submission and not
its Python callback listener; with 31 both pay for the callbacks to our webhook).
Needs PostgreSQL (BENCH_DATABASE_URL, default the local test database), redis-server
(a private one is started on a free port) and the Debian packages kannel and
kannel-extras. Prints one JSON object; exit status 1 when a goal is missed.

    .venv/bin/python scripts/bench_send.py [--customers 1000000] [--messages 100000]
        [--workers 2] [--concurrency 8] [--client-concurrency N] [--batch-size 500]
        [--chunk-size 250] [--fork] [--dlr-mask 0] [--skip-build] [--skip-send] [--keep]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urlencode

from sqlalchemy import create_engine, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import config  # noqa: E402
from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402
from tests import kannel as kannel_peer  # noqa: E402

BUILD_GOAL = 100_000  # recipients per second
RATE_GOAL = 0.80  # ours / Kannel's own
BODY = "您好，本周六上午营业部举办投资者教育讲座，欢迎参加。"


def _app(url: str, schema: str, **extra):
    values = {
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"options": f"-csearch_path={schema}"}},
        "REDIS_URL": "redis://unused",
    }
    values.update(extra)
    return create_app(type("BenchConfig", (config.Config,), values))


def _customers(n: int, first: int = 1, branches: int = 20) -> str:
    """SQL generating ``n`` customers (90 % agreed, some refused, undetermined, invalid,
    inactive, a few sharing a number) spread over ``branches`` bench branches."""
    return f"""
        INSERT INTO customers (crm_id, name, mobile, mobile_tail, mobile_status, carrier,
            branch_id, manager_id, awaiting_assignment, opened_on, risk_level, tags, active,
            consent, row_hash, created_at, updated_at)
        SELECT 'BS' || lpad(g::text, 9, '0'), '客户' || g, m.mobile, right(m.mobile, 4),
               CASE WHEN g % 200 = 0 THEN 'invalid' ELSE 'valid' END,
               (ARRAY['china_mobile', 'china_unicom', 'china_telecom'])[1 + g % 3],
               b.ids[1 + g % array_length(b.ids, 1)], NULL, false, DATE '2024-01-02', 'C3', '',
               g % 500 <> 7,
               CASE WHEN g % 20 = 1 THEN 'refused' WHEN g % 20 = 2 THEN 'undetermined'
                    ELSE 'agreed' END,
               '', now(), now()
        FROM generate_series({first}, {first + n - 1}) g
        CROSS JOIN (SELECT array_agg(id ORDER BY id) AS ids FROM units
                    WHERE code LIKE 'BS%') b
        CROSS JOIN LATERAL (SELECT '13' || lpad((CASE WHEN g % 100 = 3 THEN g - 1 ELSE g END)::text,
                                               9, '0') AS mobile) m
    """


def prepare(url: str, schema: str, customers: int) -> dict:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    app = _app(url, schema)
    started = time.perf_counter()
    with app.app_context():
        from flask_migrate import upgrade

        from app.services.demo import seed_demo

        upgrade(directory=str(ROOT / "migrations"))
        seed_demo()
        s = db.session
        s.execute(
            text(
                "INSERT INTO units (code, name, name_en, kind, is_market, is_research, is_finance, "
                "is_call_centre, active) SELECT 'BS' || lpad(g::text, 3, '0'), '压测营业部' || g, "
                "'Bench branch ' || g, 'branch', false, false, false, false, true "
                "FROM generate_series(1, 20) g"
            )
        )
        s.execute(text(_customers(customers)))
        s.commit()
        conn = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        for table in ("units", "customers"):
            conn.execute(text(f"VACUUM ANALYZE {table}"))
        conn.close()
        db.session.remove()
        db.engine.dispose()
    return {"generate_seconds": round(time.perf_counter() - started, 1)}


def _approved_message(branches: list[int] | None = None, body: str = BODY) -> int:
    """An approved, urgent HQ notice (the Operations dept) to ``branches`` (default: all)."""
    from app.models import Message, Unit
    from app.timeutil import utcnow

    s = db.session
    ops = s.execute(select(Unit).where(Unit.code == "OPS")).scalar_one()
    if branches is None:
        branches = list(s.execute(select(Unit.id).where(Unit.code.like("BS%"))).scalars())
    now = utcnow()
    message = Message(
        unit_id=ops.id,
        author_id=None,
        category="notice",
        title="bench",
        body=body,
        audience=json.dumps({"kind": "customers", "branches": branches}),
        status="approved",
        urgent=True,
        version=1,
        route="unit_heads",
        route_article="Art 8",
        approved_at=now,
        approved_version=1,
        created_at=now,
        updated_at=now,
    )
    s.add(message)
    s.commit()
    return message.id


def measure_build(url: str, schema: str) -> dict:
    """Time the recipient build of a notice to every bench customer."""
    from app.models import SendRun
    from app.services import sending

    app = _app(url, schema, REDIS_URL=os.environ["BENCH_REDIS_URL"])
    with app.app_context():
        message_id = _approved_message()
        sending.start_message(message_id)
        started = time.perf_counter()
        # The build enqueues its batches; this measures the build itself (enqueueing
        # included), run in-process as the worker would.
        sending.build_recipients(message_id)
        seconds = time.perf_counter() - started
        run = db.session.get(SendRun, message_id)
        result = {
            "recipients": run.total,
            "queued": run.eligible,
            "suppressed": run.suppressed,
            "batches": run.batches,
            "seconds": round(seconds, 2),
            "recipients_per_second": round(run.total / seconds),
        }
        # The batches of this message are not to be sent.
        from app.redis_conn import get_redis

        get_redis().flushdb()
        db.session.execute(text("UPDATE send_batches SET status = 'done'"))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return result


# ------------------------------------------------------------------ sending


class FakesmscCounter:
    """Counts "Got message" lines the fake SMSC appends to its log, reading only what is new."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.count = 0
        self.last_at = 0.0

    def poll(self) -> int:
        if not self.path.exists():
            return self.count
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        cut = data.rfind(b"\n") + 1
        new = data[:cut].count(b"Got message")
        if new:
            self.count += new
            self.last_at = time.perf_counter()
        self.offset += cut
        return self.count

    def wait(self, n: int, timeout: float) -> float | None:
        deadline = time.perf_counter() + timeout
        while self.poll() < n:
            if time.perf_counter() > deadline:
                return None
            time.sleep(0.05)
        return self.last_at


def _redis_server() -> tuple[subprocess.Popen, str]:
    port = kannel_peer.free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not kannel_peer.wait_port(port, 10):
        raise RuntimeError("redis-server did not start")
    return proc, f"redis://127.0.0.1:{port}/0"


def _worker_config(tmp: Path, values: dict) -> str:
    lines = [f"    {key} = {value!r}\n" for key, value in values.items()]
    (tmp / "bench_send_config.py").write_text(
        "import config\n\n\nclass BenchSendConfig(config.Config):\n" + "".join(lines)
    )
    return "bench_send_config.BenchSendConfig"


def measure_ours(
    url: str,
    schema: str,
    peer,
    messages: int,
    workers: int,
    concurrency: int,
    dlr_mask: int,
    tmp: Path,
    batch_size: int = 500,
    chunk_size: int = 250,
    no_fork: bool = False,
) -> dict:
    """Our pipeline: dispatcher -> build -> `send` jobs on ``workers`` worker processes."""
    from app.models import Customer, Unit
    from app.services import sending

    settings = dict(
        peer.config(),
        SQLALCHEMY_DATABASE_URI=url,
        SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"options": f"-csearch_path={schema}"}},
        REDIS_URL=os.environ["BENCH_REDIS_URL"],
        SMS_MAX_RATE=0,
        SEND_CONCURRENCY=concurrency,
        SEND_CHUNK_SIZE=chunk_size,
        SEND_BATCH_SIZE=batch_size,
        KANNEL_DLR_MASK=dlr_mask,
        PUBLIC_BASE_URL=peer.callback_base,
    )
    app = _app(url, schema, **{k: v for k, v in settings.items() if k != "SQLALCHEMY_DATABASE_URI"})
    config_path = _worker_config(tmp, settings)
    env = dict(os.environ, PYTHONPATH=f"{tmp}:{ROOT}")
    procs = []
    for i in range(workers):
        log = open(tmp / f"worker{i}.log", "wb")  # noqa: SIM115 (the child keeps it)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "worker.py"),
                    "--no-scheduler",
                    "--queues",
                    "send",
                    "--config",
                    config_path,
                ]
                + (["--no-fork"] if no_fork else []),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )
        )
        log.close()
    try:
        time.sleep(3)  # workers up and listening
        with app.app_context():
            # A branch of its own holding exactly ``messages`` agreed customers.
            s = db.session
            s.execute(
                text(
                    "INSERT INTO units (code, name, name_en, kind, is_market, is_research, is_finance, "
                    "is_call_centre, active) VALUES ('BSX', '压测发送营业部', 'Send bench branch', "
                    "'branch', false, false, false, false, true)"
                )
            )
            bsx = s.execute(select(Unit.id).where(Unit.code == "BSX")).scalar_one()
            s.execute(
                text("""
                INSERT INTO customers (crm_id, name, mobile, mobile_tail, mobile_status, carrier,
                    branch_id, awaiting_assignment, opened_on, risk_level, tags, active, consent,
                    row_hash, created_at, updated_at)
                SELECT 'SX' || lpad(g::text, 9, '0'), '客户' || g, '159' || lpad(g::text, 8, '0'),
                       right(lpad(g::text, 8, '0'), 4), 'valid', 'china_mobile', :b, false,
                       DATE '2024-01-02', 'C3', '', true, 'agreed', '', now(), now()
                FROM generate_series(1, :n) g
            """),
                {"b": bsx, "n": messages},
            )
            s.commit()
            assert (
                s.execute(
                    select(db.func.count()).select_from(Customer).where(Customer.branch_id == bsx)
                ).scalar()
                == messages
            )
            message_id = _approved_message([bsx])
            counter = FakesmscCounter(peer.rundir / "fakesmsc.log")
            started = time.perf_counter()
            sending.start_message(message_id)
            last = counter.wait(messages, timeout=max(600, messages / 50))
            if last is None:
                raise RuntimeError(f"only {counter.count} of {messages} reached the fake SMSC")
            seconds = last - started
            built = db.session.execute(
                text(
                    "SELECT EXTRACT(EPOCH FROM built_at - started_at) FROM send_runs WHERE message_id = :m"
                ),
                {"m": message_id},
            ).scalar()
            db.session.remove()
            db.engine.dispose()
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {
        "messages": messages,
        "workers": workers,
        "connections_per_worker": concurrency,
        "batch_size": batch_size,
        "chunk_size": chunk_size,
        "no_fork": no_fork,
        "seconds": round(seconds, 2),
        "messages_per_second": round(messages / seconds),
        "build_seconds": round(float(built or 0), 2),
        "send_phase_messages_per_second": round(messages / max(seconds - float(built or 0), 1e-6)),
    }


def measure_kannel(peer, messages: int, concurrency: int, dlr_mask: int) -> dict:
    """Kannel's own rate: a plain thread pool posting the same messages straight to sendsms."""
    local = threading.local()
    port = peer.ports["SENDSMS"]
    base = {
        "username": kannel_peer.USERNAME,
        "password": kannel_peer.PASSWORD,
        "from": "10690001",
        "text": "【和兴证券】" + BODY,
        "charset": "UTF-8",
        "coding": "2",
    }
    if dlr_mask:
        base["dlr-mask"] = str(dlr_mask)
        base["dlr-url"] = (
            f"{peer.callback_base}/webhooks/kannel/dlr?token={peer.token}&rid=0&status=%d"
        )
    errors = []

    def send(i: int) -> None:
        query = urlencode(dict(base, to=f"158{i:08d}"), quote_via=quote)
        for _attempt in range(3):
            try:
                conn = getattr(local, "conn", None)
                if conn is None:
                    conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/cgi-bin/sendsms?" + query)
                response = conn.getresponse()
                response.read()
                if response.status != 202:
                    errors.append(response.status)
                return
            except (OSError, http.client.HTTPException):
                local.conn = None
        errors.append("connection")

    counter = FakesmscCounter(peer.rundir / "fakesmsc.log")
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, range(messages)))
    accepted = time.perf_counter() - started
    last = counter.wait(messages, timeout=max(600, messages / 50))
    if last is None:
        raise RuntimeError(f"only {counter.count} of {messages} reached the fake SMSC")
    seconds = last - started
    return {
        "messages": messages,
        "client_concurrency": concurrency,
        "errors": len(errors),
        "accept_seconds": round(accepted, 2),
        "seconds": round(seconds, 2),
        "messages_per_second": round(messages / seconds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8, help="connections per worker")
    parser.add_argument(
        "--client-concurrency",
        type=int,
        default=0,
        help="connections of the plain client (default: workers x concurrency)",
    )
    parser.add_argument("--dlr-mask", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500, help="SEND_BATCH_SIZE")
    parser.add_argument("--chunk-size", type=int, default=250, help="SEND_CHUNK_SIZE")
    parser.add_argument(
        "--fork",
        action="store_true",
        help="workers fork a horse per job (worker.py's default) instead of --no-fork",
    )
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--skip-send", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the schema for inspection")
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
        "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    if not url.startswith("postgresql"):
        print("the send benchmark needs PostgreSQL (BENCH_DATABASE_URL)", file=sys.stderr)
        return 2
    reason = kannel_peer.missing()
    if reason and not args.skip_send:
        print(reason, file=sys.stderr)
        return 2
    schema = f"bench_send_{uuid.uuid4().hex[:8]}"
    report: dict = {
        "schema": schema,
        "goals": {"build_recipients_per_second": BUILD_GOAL, "ours_vs_kannel": RATE_GOAL},
    }
    redis_proc, redis_url = _redis_server()
    os.environ["BENCH_REDIS_URL"] = redis_url
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"{schema}"
    tmp.mkdir(parents=True, exist_ok=True)
    peer = None
    ok = True
    try:
        report["prepare"] = prepare(url, schema, args.customers if not args.skip_build else 0)
        if not args.skip_build:
            report["build"] = measure_build(url, schema)
            ok &= report["build"]["recipients_per_second"] >= BUILD_GOAL
        if not args.skip_send:
            # Delivery reports (with --dlr-mask) go to a port nobody serves in the Kannel
            # run and to our webhook in ours; Kannel retries and drops them either way.
            peer = kannel_peer.KannelPeer(
                f"http://127.0.0.1:{kannel_peer.free_port()}", uuid.uuid4().hex
            ).start()
            client = args.client_concurrency or args.workers * args.concurrency
            report["kannel"] = measure_kannel(peer, args.messages, client, args.dlr_mask)
            report["ours"] = measure_ours(
                url,
                schema,
                peer,
                args.messages,
                args.workers,
                args.concurrency,
                args.dlr_mask,
                tmp,
                args.batch_size,
                args.chunk_size,
                not args.fork,
            )
            ratio = report["ours"]["messages_per_second"] / report["kannel"]["messages_per_second"]
            report["ours_vs_kannel"] = round(ratio, 3)
            report["dlr_mask"] = args.dlr_mask
            ok &= ratio >= RATE_GOAL
    finally:
        if peer is not None:
            peer.cleanup()
        redis_proc.send_signal(signal.SIGTERM)
        redis_proc.wait(10)
        if not args.keep:
            engine = create_engine(url)
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            engine.dispose()
    report["goals_met"] = ok
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
