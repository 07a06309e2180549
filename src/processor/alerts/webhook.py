"""Webhook delivery: the SPEC §14 JSON body, POSTed to each channel of a rule.

Deliveries run on a bounded pool of threads of their own, after the evaluation round has
committed, so a slow or dead webhook never holds up evaluation or another rule's delivery;
one alert's notifications reach a channel in order.
Each attempt times out after 10 s; a failure (connection error, timeout, non-2xx) is retried
after 1 s and 4 s: 3 attempts within 35 s. The outcome is appended to the alert's
``notifications``. URLs are logged and recorded redacted (scheme, host, port).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from sqlalchemy.engine import Engine

from processor.alerts import store
from processor.alerts.rules import redact

log = structlog.get_logger(__name__)

TIMEOUT = 10.0
BACKOFF = (1.0, 4.0)  # waits before the 2nd and 3rd attempts


@dataclass(frozen=True)
class Notice:
    """One notification of one alert, to every channel of its rule."""

    project_id: int
    alert_id: uuid.UUID
    kind: str  # firing | resolved | repeat
    body: dict[str, Any]
    channels: tuple[str, ...]


def _fmt(value: float | None) -> str:
    return "no data" if value is None else f"{value:.4g}"


def body(
    *,
    rule: str,
    state: str,
    severity: str,
    value: float | None,
    threshold: float,
    op: str,
    source: str,
    window: str,
    started_at: str | None,
    resolved_at: str | None,
    alert_id: uuid.UUID,
    scope: str = "",
) -> dict[str, Any]:
    """The webhook JSON of SPEC §14; ``text`` is one line, for a Slack incoming webhook."""
    where = f" ({scope})" if scope else ""
    message = f"{source}{where} is {_fmt(value)} over {window}, threshold {op} {threshold:g}"
    if state == "resolved":
        text = f"[RESOLVED] {rule}: {message}"
    else:
        text = f"[{severity.upper()}] {rule} is firing: {message}"
    return {
        "rule": rule,
        "state": state,
        "severity": severity,
        "value": value,
        "threshold": threshold,
        "started_at": started_at,
        "resolved_at": resolved_at,
        "message": message,
        "text": text,
        "alert_id": str(alert_id),
    }


class PostFailed(Exception):
    pass


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead past the host allowlist: treat it as a failure."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post_json(url: str, payload: bytes, timeout: float) -> int:
    """POST ``payload``; the HTTP status, or PostFailed (never with the URL in its text)."""
    request = urllib.request.Request(
        url,
        data=payload,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "telemetry-processor"},
    )
    try:
        with _opener.open(request, timeout=timeout) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PostFailed(type(reason).__name__ if not isinstance(reason, str) else reason) from None


class Deliverer:
    """Delivers notices on ``max_workers`` threads; ``submit`` never blocks."""

    def __init__(
        self,
        engine: Engine,
        *,
        timeout: float = TIMEOUT,
        backoff: Sequence[float] = BACKOFF,
        max_workers: int = 16,
        max_pending: int = 1000,
        post: Callable[[str, bytes, float], int] = post_json,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.timeout = timeout
        self.backoff = tuple(backoff)
        self.max_pending = max_pending
        self.post = post
        self.sleep = sleep
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="alert-webhook")
        self._pending = 0
        self._chains: dict[tuple[uuid.UUID, str], deque[Notice]] = {}
        self._idle = threading.Condition()
        self._closed = False

    def submit(self, notice: Notice) -> None:
        for url in notice.channels:
            key = (notice.alert_id, url)
            with self._idle:
                full = self._closed or self._pending >= self.max_pending
                if not full:
                    self._pending += 1
                    # One alert's notices reach a channel in order: a resolution waits
                    # for the firing notice still being retried.
                    chain = self._chains.get(key)
                    if chain is not None:
                        chain.append(notice)
                        continue
                    self._chains[key] = deque()
            if full:
                self._record(notice, url, "dropped", 0, None, "delivery queue full or stopping")
                continue
            self._executor.submit(self._run_chain, key, notice, url)

    def _run_chain(self, key: tuple[uuid.UUID, str], notice: Notice, url: str) -> None:
        while True:
            self._deliver(notice, url)
            with self._idle:
                chain = self._chains[key]
                if not chain:
                    del self._chains[key]
                    return
                notice = chain.popleft()

    def _deliver(self, notice: Notice, url: str) -> None:
        try:
            payload = orjson.dumps(notice.body)
            status: int | None = None
            error: str | None = None
            attempts = 0
            for attempt, wait in enumerate((0.0, *self.backoff)):
                if wait:
                    self.sleep(wait)
                attempts = attempt + 1
                try:
                    status = self.post(url, payload, self.timeout)
                    error = None if 200 <= status < 300 else f"HTTP {status}"
                except PostFailed as exc:
                    status, error = None, str(exc)
                except Exception as exc:  # never let one channel break the pool
                    status, error = None, type(exc).__name__
                if error is None:
                    break
            outcome = "delivered" if error is None else "failed"
            self._record(notice, url, outcome, attempts, status, error)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _record(
        self,
        notice: Notice,
        url: str,
        outcome: str,
        attempts: int,
        status: int | None,
        error: str | None,
    ) -> None:
        entry = {
            "kind": notice.kind,
            "channel": redact(url),
            "outcome": outcome,
            "attempts": attempts,
            "http_status": status,
            "error": error,
            "at": store.iso(datetime.now(UTC)),
        }
        level = log.info if outcome == "delivered" else log.warning
        level("alert_notification", alert=str(notice.alert_id), **entry)
        try:
            store.record_delivery(self.engine, notice.project_id, notice.alert_id, entry)
        except Exception as exc:
            log.warning("alert_notification_not_recorded", error=type(exc).__name__)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """True once every submitted delivery has finished (within ``timeout`` seconds)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, grace: float = 10.0) -> None:
        """Stop taking notices; give those in flight ``grace`` seconds. Safe twice."""
        with self._idle:
            self._closed = True
        self.wait_idle(grace)
        self._executor.shutdown(wait=False, cancel_futures=True)
