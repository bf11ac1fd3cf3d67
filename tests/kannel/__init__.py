"""A real Kannel (bearerbox + smsbox + the fake SMSC) on free loopback ports, for tests and
the send benchmark. Needs the Debian packages ``kannel`` and ``kannel-extras``.

``KannelPeer.start(...)`` renders ``kannel.conf.in`` into a fresh temporary directory and
starts the three processes; ``stop()`` ends exactly those (by their process ids, plus any
smsbox that respawned itself for this directory). ``received()`` reads what the fake SMSC
got (the "handsets"), ``mo()`` makes a handset send a reply.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

BEARERBOX = os.environ.get("KANNEL_BEARERBOX", "/usr/sbin/bearerbox")
SMSBOX = os.environ.get("KANNEL_SMSBOX", "/usr/sbin/smsbox")
FAKESMSC = os.environ.get("KANNEL_FAKESMSC", "/usr/lib/kannel/test/fakesmsc")
TEMPLATE = Path(__file__).with_name("kannel.conf.in")
USERNAME, PASSWORD = "smsapp", "smsapp-secret"
_GOT = re.compile(r"Got message \d+: <(\S+) (\S+) (\S+) (.*)>\s*$")


def missing() -> str | None:
    """Why Kannel cannot run here, or None."""
    for path in (BEARERBOX, SMSBOX, FAKESMSC):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: apt-get install kannel kannel-extras"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


@dataclass
class Handset:
    """One SMS the fake SMSC received: sender, receiver and the decoded text."""

    sender: str
    to: str
    coding: str
    text: str


def _decode(kind: str, data: str) -> str:
    if kind == "ucs-2":
        return unquote_to_bytes(data).decode("utf-16-be", "replace")
    if kind == "text":
        return data
    return unquote_to_bytes(data).decode("utf-8", "replace")


class KannelPeer:
    def __init__(self, callback_base: str, token: str, *, log_level: int = 1):
        self.callback_base = callback_base.rstrip("/")
        self.token = token
        self.log_level = log_level
        self.rundir = Path(tempfile.mkdtemp(prefix="kannel-test-"))
        self.ports = {name: free_port() for name in ("ADMIN", "SMSBOX", "SENDSMS", "FAKESMSC")}
        self.procs: dict[str, subprocess.Popen] = {}
        self._fifo_fd: int | None = None

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['SENDSMS']}/cgi-bin/sendsms"

    @property
    def conf(self) -> Path:
        return self.rundir / "kannel.conf"

    def config(self) -> dict:
        """The app settings that make it send through this Kannel."""
        return {
            "SMS_GATEWAY": "kannel",
            "KANNEL_SENDSMS_URL": self.sendsms_url,
            "KANNEL_USERNAME": USERNAME,
            "KANNEL_PASSWORD": PASSWORD,
            "KANNEL_FROM": "10690001",
            "KANNEL_WEBHOOK_TOKEN": self.token,
            "PUBLIC_BASE_URL": self.callback_base,
        }

    def _render(self) -> None:
        text = TEMPLATE.read_text()
        values = {
            "RUNDIR": str(self.rundir),
            "LOG_LEVEL": str(self.log_level),
            "CALLBACK_BASE": self.callback_base,
            "TOKEN": quote(self.token, safe=""),
            "USERNAME": USERNAME,
            "PASSWORD": PASSWORD,
        }
        values.update({f"{name}_PORT": str(port) for name, port in self.ports.items()})
        for key, value in values.items():
            text = text.replace(f"@{key}@", value)
        self.conf.write_text(text)

    def _spawn(self, name: str, argv: list[str], **kw) -> None:
        out = open(self.rundir / f"{name}.out", "ab")  # noqa: SIM115 (kept open by the child)
        self.procs[name] = subprocess.Popen(argv, cwd=self.rundir, stdout=out, stderr=out, **kw)
        out.close()

    def start_fakesmsc(self) -> None:
        fifo = self.rundir / "mo.fifo"
        if not fifo.exists():
            os.mkfifo(fifo)
        if self._fifo_fd is None:
            # Read-write, so the fake SMSC never sees end-of-file on its input.
            self._fifo_fd = os.open(fifo, os.O_RDWR)
        log = open(self.rundir / "fakesmsc.log", "ab")  # noqa: SIM115
        self.procs["fakesmsc"] = subprocess.Popen(
            [FAKESMSC, "-H", "127.0.0.1", "-r", str(self.ports["FAKESMSC"]), "-i", "0", "-v", "0"],
            cwd=self.rundir,
            stdin=self._fifo_fd,
            stdout=log,
            stderr=log,
        )
        log.close()

    def start(self) -> KannelPeer:
        self._render()
        self._spawn("bearerbox", [BEARERBOX, "-v", "2", str(self.conf)])
        if not wait_port(self.ports["FAKESMSC"], 10):
            self.stop()
            raise RuntimeError(f"bearerbox did not start; see {self.rundir}/bearerbox.out")
        self.start_fakesmsc()
        self._spawn("smsbox", [SMSBOX, "-v", "2", str(self.conf)])
        if not wait_port(self.ports["SENDSMS"], 10):
            self.stop()
            raise RuntimeError(f"smsbox did not start; see {self.rundir}/smsbox.out")
        self.wait_smsc_online()
        return self

    def wait_smsc_online(self, seconds: float = 10) -> None:
        """Until bearerbox reports the fake SMSC link up (messages would queue otherwise)."""
        import urllib.request

        url = f"http://127.0.0.1:{self.ports['ADMIN']}/status.txt?password=status-secret"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                status = urllib.request.urlopen(url, timeout=2).read().decode("utf-8", "replace")
            except OSError:
                status = ""
            if re.search(r"FAKE\S*\s.*online", status):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the fake SMSC did not come online: {status[-300:]}")

    def _respawned_smsboxes(self) -> list[int]:
        """smsbox restarts itself (new pid) when bearerbox goes away; find ours by argv."""
        want = [SMSBOX, "-v", "2", str(self.conf)]
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")[:-1]
            except OSError:
                continue
            if [a.decode(errors="replace") for a in argv] == want:
                found.append(int(entry.name))
        return found

    def _stop_proc(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def stop_fakesmsc(self) -> None:
        self._stop_proc("fakesmsc")

    def stop(self) -> None:
        self._stop_proc("smsbox")
        for pid in self._respawned_smsboxes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self._stop_proc("fakesmsc")
        self._stop_proc("bearerbox")
        if self._fifo_fd is not None:
            os.close(self._fifo_fd)
            self._fifo_fd = None

    def cleanup(self) -> None:
        self.stop()
        if os.environ.get("KANNEL_KEEP_RUNDIR") != "1":
            shutil.rmtree(self.rundir, ignore_errors=True)

    # ------------------------------------------------------------------ the handsets

    def received(self) -> list[Handset]:
        """Every SMS the fake SMSC has received so far, in order."""
        path = self.rundir / "fakesmsc.log"
        if not path.exists():
            return []
        out = []
        for line in path.read_text("utf-8", "replace").splitlines():
            m = _GOT.search(line)
            if m:
                sender, to, kind, data = m.groups()
                out.append(Handset(sender, to, kind, _decode(kind, data)))
        return out

    def wait_received(self, count: int, seconds: float = 60) -> list[Handset]:
        deadline = time.monotonic() + seconds
        got = self.received()
        while len(got) < count and time.monotonic() < deadline:
            time.sleep(0.2)
            got = self.received()
        return got

    def mo(self, sender: str, text: str, to: str = "10690001") -> None:
        """A handset sends ``text``: one line into the fake SMSC's input (one write per
        line, as the fake SMSC reads them with fgets after select)."""
        data = quote(text.encode("utf-16-be"), safe="")
        line = f"{sender} {to} ucs2 {data}\n".encode()
        if len(line) > 255:
            raise ValueError("the fake SMSC reads at most 255 bytes a line")
        fd = os.open(self.rundir / "mo.fifo", os.O_WRONLY)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        time.sleep(0.3)


def wait_for(predicate, seconds: float, step: float = 0.2, what: str = "condition", context=None):
    """Poll ``predicate`` until it returns something true (returned); AssertionError after
    ``seconds``, with the tail of ``context()`` (e.g. a worker's log) in the message."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    detail = f"\n{context()[-4000:]}" if context is not None else ""
    raise AssertionError(f"timed out after {seconds}s waiting for {what}{detail}")
