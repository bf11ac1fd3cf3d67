"""The gateways against a local HTTP server standing in for Kannel's sendsms, and the
simulator: every answer maps to accepted / transient / permanent / unknown (R-51, R-52)."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import SimulatedSms
from app.services.gateways import Outgoing, get_gateway
from app.services.gateways.kannel import KannelGateway, is_gsm
from app.services.gateways.simulator import SimulatorGateway


class FakeSendsms(BaseHTTPRequestHandler):
    """Answers as told by the ``mode`` of the server; records each request's query."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.server.requests.append(parse_qs(urlsplit(self.path).query, keep_blank_values=True))
        mode = self.server.mode
        if mode == "hang":
            time.sleep(2)
            return
        if mode == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, body = {
            "ok": (202, "0: Accepted for delivery"),
            "queued": (202, "3: Queued for later delivery"),
            "auth": (403, "Authorization failed for sendsms"),
            "denied": (400, "Number(s) has/have been denied by white- and/or black-lists."),
            "down": (503, "Service unavailable"),
        }[mode]
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def sendsms():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSendsms)
    server.daemon_threads = True
    server.requests = []
    server.mode = "ok"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _gateway(port: int, **extra) -> KannelGateway:
    config = {
        "KANNEL_SENDSMS_URL": f"http://127.0.0.1:{port}/cgi-bin/sendsms",
        "KANNEL_USERNAME": "smsapp",
        "KANNEL_PASSWORD": "s3cret",
        "KANNEL_FROM": "10690001",
        "KANNEL_DLR_MASK": 31,
        "SMS_GATEWAY_TIMEOUT": 1,
    }
    config.update(extra)
    return KannelGateway(config, dlr_base="http://app.example/webhooks/kannel/dlr?token=tok")


SMS = Outgoing(
    recipient_id=42, mobile="13800138000", text="【和兴证券】您好，同意请回复Y", sender=""
)


def test_request_carries_utf8_ucs2_and_our_dlr_url(sendsms):
    gw = _gateway(sendsms.server_port)
    result = gw.submit(SMS)
    assert result.kind == "accepted"
    q = sendsms.requests[0]
    assert q["username"] == ["smsapp"] and q["password"] == ["s3cret"]
    assert q["from"] == ["10690001"] and q["to"] == ["13800138000"]
    assert q["text"] == ["【和兴证券】您好，同意请回复Y"]
    assert q["charset"] == ["UTF-8"] and q["coding"] == ["2"]
    assert q["dlr-mask"] == ["31"]
    assert q["dlr-url"] == [
        "http://app.example/webhooks/kannel/dlr?token=tok&rid=42&status=%d&answer=%A&ts=%T&fid=%F"
    ]
    gw.close()


def test_plain_gsm_text_goes_as_coding_0(sendsms):
    gw = _gateway(sendsms.server_port, KANNEL_DLR_MASK=0)
    gw.submit(Outgoing(1, "13800138000", "Hello {world}"))
    q = sendsms.requests[0]
    assert q["coding"] == ["0"] and "dlr-url" not in q
    assert is_gsm("Hello @£$") and not is_gsm("您好") and not is_gsm("`")


def test_keep_alive_connection_is_reused(sendsms):
    gw = _gateway(sendsms.server_port)
    for _ in range(5):
        assert gw.submit(SMS).kind == "accepted"
    assert len(gw._connections) == 1
    gw.close()


@pytest.mark.parametrize(
    "mode, kind",
    [
        ("ok", "accepted"),
        ("queued", "accepted"),
        ("auth", "transient"),
        ("down", "transient"),
        ("denied", "permanent"),
        ("hang", "unknown"),
        ("drop", "unknown"),
    ],
)
def test_answers_map_to_outcomes(sendsms, mode, kind):
    sendsms.mode = mode
    result = _gateway(sendsms.server_port).submit(SMS)
    assert result.kind == kind, result
    if kind != "accepted":
        assert result.reason


def test_connection_refused_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens once the socket is closed
    result = _gateway(port).submit(SMS)
    assert result.kind == "transient" and "connect" in result.reason


def test_get_gateway_by_name(app):
    app.config["SMS_GATEWAY"] = "simulator"
    assert get_gateway(app.config).name == "simulator"
    app.config["SMS_GATEWAY"] = "carrier-pigeon"
    with pytest.raises(ValueError):
        get_gateway(app.config)


def test_simulator_records_and_reports(app, run_jobs, db_backend):
    from tests.factories import make_approved_message, make_customer, make_recipient

    message = make_approved_message(status="sending")
    ok = make_recipient(message, make_customer(mobile="13812345678"), status="queued")
    bad = make_recipient(message, make_customer(mobile="13812340000"), status="queued")
    gw = SimulatorGateway(app.config)
    results = [gw.submit(Outgoing(r.id, r.mobile, "【和兴证券】测试")) for r in (ok, bad)]
    assert [r.kind for r in results] == ["accepted", "accepted"]
    gw.flush()
    rows = db.session.execute(select(SimulatedSms).order_by(SimulatedSms.id)).scalars().all()
    assert [(r.mobile, r.text, r.status) for r in rows] == [
        ("13812345678", "【和兴证券】测试", "sent"),
        ("13812340000", "【和兴证券】测试", "sent"),
    ]
    assert run_jobs(["default"]) == 0
    from app.models import Recipient

    db.session.expire_all()
    assert db.session.get(Recipient, ok.id).status == "delivered"
    failed = db.session.get(Recipient, bad.id)
    assert failed.status == "failed" and "simulated" in failed.reason
