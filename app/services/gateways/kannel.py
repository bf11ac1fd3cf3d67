"""Kannel's HTTP ``sendsms`` interface (R-51).

Kannel fronts the carriers' SMPP/HTTP links; we speak only its sendsms GET. Chinese text
needs both ``charset=UTF-8`` and ``coding=2`` (UCS-2), or Kannel mangles it and still
answers 202 (see docs/sending.md). Kannel's answer carries no message id, so each request
names our recipient id in the ``dlr-url`` it calls back with delivery reports.

Answers: 202 (``0: Accepted for delivery`` or ``3: Queued for later delivery``) is
accepted; 5xx and 401/403 (the gateway down or our credentials wrong: fixable, so worth
retrying) are transient; any other 4xx means Kannel refused this message for good.
"""

from __future__ import annotations

import http.client
import threading
import time
from urllib.parse import quote, urlencode, urlsplit

from flask import current_app

from app.services.gateways import Outgoing, SubmitResult

# GSM 03.38 basic set and extension table: text made only of these goes as coding=0.
GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = set("^{}\\[~]|€\f")
# Reconnect instead of reusing a keep-alive connection idle for longer than this: a
# connection the server closed meanwhile would fail *after* our request went out, and
# that failure could not be told apart from a lost answer.
MAX_IDLE_SECONDS = 2.0


def is_gsm(text: str) -> bool:
    return all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text)


def callback_base(endpoint: str, **values) -> str:
    """An absolute URL of one of our routes as the gateway must call it (PUBLIC_BASE_URL)."""
    base = urlsplit(current_app.config["PUBLIC_BASE_URL"])
    adapter = current_app.url_map.bind(
        base.netloc, script_name=base.path or "/", url_scheme=base.scheme or "http"
    )
    return adapter.build(endpoint, values, force_external=True)


class KannelGateway:
    name = "kannel"

    def __init__(self, config, *, dlr_base: str | None = None):
        url = urlsplit(config["KANNEL_SENDSMS_URL"])
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("KANNEL_SENDSMS_URL must be an http(s) URL")
        self.scheme = url.scheme
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.path = url.path or "/cgi-bin/sendsms"
        self.username = config["KANNEL_USERNAME"]
        self.password = config["KANNEL_PASSWORD"]
        self.default_sender = config["KANNEL_FROM"]
        self.dlr_mask = int(config.get("KANNEL_DLR_MASK", 31))
        self.timeout = float(config.get("SMS_GATEWAY_TIMEOUT", 10))
        if dlr_base is None and self.dlr_mask:
            dlr_base = callback_base("webhooks.kannel_dlr", token=config["KANNEL_WEBHOOK_TOKEN"])
        self.dlr_base = dlr_base or ""
        self._prefix: str | None = None
        self._dlr_head = self._dlr_tail = ""
        self._text_cache: tuple[str, str] | None = None
        self._local = threading.local()
        self._connections: dict[int, http.client.HTTPConnection] = {}  # by thread, for close()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ request

    def request_path(self, sms: Outgoing) -> str:
        """The sendsms path with its query for one message. The parts common to every
        message are encoded once; a batch sends one text to many numbers, so the last
        text's encoding is kept too (this runs thousands of times a second)."""
        if self._prefix is None:
            common = urlencode(
                {"username": self.username, "password": self.password, "charset": "UTF-8"},
                quote_via=quote,
            )
            self._prefix = f"{self.path}?{common}"
            if self.dlr_mask:
                head = quote(f"{self.dlr_base}&rid=", safe="")
                self._dlr_head = f"&dlr-mask={self.dlr_mask}&dlr-url={head}"
                # Kannel expands %d (report type), %A (SMSC answer), %T (time), %F (SMSC id).
                self._dlr_tail = quote("&status=%d&answer=%A&ts=%T&fid=%F", safe="")
        cached = self._text_cache
        if cached is None or cached[0] != sms.text:
            coding = "0" if is_gsm(sms.text) else "2"
            cached = self._text_cache = (
                sms.text,
                f"&coding={coding}&text={quote(sms.text, safe='')}",
            )
        path = (
            f"{self._prefix}&from={quote(sms.sender or self.default_sender, safe='')}"
            f"&to={quote(sms.mobile, safe='')}{cached[1]}"
        )
        if self.dlr_mask:
            path += f"{self._dlr_head}{sms.recipient_id}{self._dlr_tail}"
        return path

    def _new_connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        with self._lock:
            self._connections[threading.get_ident()] = conn
        return conn

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection and whether it is fresh (not yet used)."""
        conn = getattr(self._local, "conn", None)
        last = getattr(self._local, "last_used", 0.0)
        if conn is not None and (conn.sock is None or time.monotonic() - last > MAX_IDLE_SECONDS):
            conn.close()
            conn = None
        if conn is None:
            conn = self._new_connection()
            self._local.conn = conn
            return conn, True
        return conn, False

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def submit(self, sms: Outgoing) -> SubmitResult:
        path = self.request_path(sms)
        for _attempt in range(2):
            conn, fresh = self._connection()
            if fresh:
                try:
                    conn.connect()
                except (TimeoutError, OSError) as exc:
                    self._drop_connection()
                    return SubmitResult.transient(f"cannot connect to Kannel: {exc}")
            try:
                conn.request("GET", path, headers={"Connection": "keep-alive"})
            except OSError as exc:
                # The request did not get out whole (a reused connection the server had
                # closed): Kannel never acts on a partial request. Once more, fresh.
                self._drop_connection()
                if fresh:
                    return SubmitResult.transient(f"sending to Kannel failed: {exc}")
                continue
            try:
                response = conn.getresponse()
                body = response.read(2000).decode("utf-8", "replace").strip()
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                # The request went out; whether Kannel took it cannot be known.
                self._drop_connection()
                return SubmitResult.unknown(f"no answer from Kannel: {exc!r}")
            self._local.last_used = time.monotonic()
            if response.will_close:
                self._drop_connection()
            return self._classify(response.status, body)
        return SubmitResult.transient("Kannel refused the request twice")

    @staticmethod
    def _classify(status: int, body: str) -> SubmitResult:
        if status == 202 or (200 <= status < 300 and body[:2] in ("0:", "3:")):
            return SubmitResult.accepted()  # Kannel gives no id; the dlr-url carries ours
        reason = f"Kannel HTTP {status}: {body[:150]}"
        if status >= 500 or status in (401, 403):
            return SubmitResult.transient(reason)
        return SubmitResult.permanent(reason)

    def flush(self) -> None:
        """Nothing to do: Kannel reports delivery through the webhook."""

    def close(self) -> None:
        with self._lock:
            for conn in self._connections.values():
                conn.close()
            self._connections.clear()
