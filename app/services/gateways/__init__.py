"""Carrier gateways behind one small interface (R-51), chosen by ``SMS_GATEWAY``.

A gateway takes one ``Outgoing`` message and answers with a ``SubmitResult``:

- ``accepted``: the gateway took it (``reference`` is its id, when it gives one);
- ``transient``: it was certainly not taken and may be tried again later (connection
  refused, HTTP 5xx, the gateway's own queue full);
- ``permanent``: it was refused for good (a number the gateway rejects, a malformed
  request); retrying cannot help;
- ``unknown``: the request went out but no answer came back (a read timeout, a connection
  dropped mid-answer). R-52 forbids guessing: the recipient becomes ``unknown`` and is
  only sent again by an operator's explicit retry.

``submit`` is called from several threads of one worker at once; gateways keep one
connection per thread. ``flush`` is called from the worker's main thread (inside the
application context) after the results of a chunk are committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

RESULT_KINDS = ("accepted", "transient", "permanent", "unknown")
GATEWAYS = ("simulator", "kannel")


@dataclass(frozen=True)
class Outgoing:
    """One SMS to one number. ``recipient_id`` travels with it so reports find their row."""

    recipient_id: int
    mobile: str
    text: str
    sender: str = ""


@dataclass(frozen=True)
class SubmitResult:
    kind: str
    reference: str = ""
    reason: str = ""

    @classmethod
    def accepted(cls, reference: str = "") -> SubmitResult:
        return cls("accepted", reference=reference)

    @classmethod
    def transient(cls, reason: str) -> SubmitResult:
        return cls("transient", reason=reason)

    @classmethod
    def permanent(cls, reason: str) -> SubmitResult:
        return cls("permanent", reason=reason)

    @classmethod
    def unknown(cls, reason: str) -> SubmitResult:
        return cls("unknown", reason=reason)


class Gateway(Protocol):
    name: str

    def submit(self, sms: Outgoing) -> SubmitResult: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def get_gateway(config) -> Gateway:
    """The gateway ``config["SMS_GATEWAY"]`` names; ``ValueError`` for an unknown name."""
    name = config.get("SMS_GATEWAY", "simulator")
    if name == "simulator":
        from app.services.gateways.simulator import SimulatorGateway

        return SimulatorGateway(config)
    if name == "kannel":
        from app.services.gateways.kannel import KannelGateway

        return KannelGateway(config)
    raise ValueError(f"SMS_GATEWAY must be one of {', '.join(GATEWAYS)}, not {name!r}")
