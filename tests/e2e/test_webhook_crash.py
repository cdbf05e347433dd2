"""A ``taskloom serve`` host SIGKILLed while webhook deliveries are in flight: a new host
delivers every event (the killed host's leased deliveries come back once their
visibility, the webhook timeout + 30 s, is over), each at least once, none lost; the
requests cut off by the kill are delivered again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from crash_app import ROOT, wait_until

import taskloom as tl
from taskloom.topics.specs import WebhookSpec

HERE = Path(__file__).resolve().parent
APP_SPEC = f"{HERE / 'webhook_crash_app.py'}:app"
EVENTS = 40
HOLD = 0.4  # seconds the receiver holds each request open before its 200
TIMEOUT = 2.0  # the subscription's timeout: leased rows come back 32 s after a kill
DEADLINE = 120


@dataclass
class Receiver:
    """Records each delivery's event id when the request arrives (``received``) and once
    its 200 was written (``answered``); ``held`` counts requests being held open."""

    received: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    held: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def snapshot(self) -> tuple[list[str], list[str], set[str]]:
        with self.lock:
            return list(self.received), list(self.answered), set(self.held)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                event_id = json.loads(body)["id"]
                with receiver.lock:
                    receiver.received.append(event_id)
                    receiver.held.add(event_id)
                time.sleep(HOLD)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self.wfile.flush()
                except OSError:
                    return
                finally:
                    with receiver.lock:
                        receiver.held.discard(event_id)
                with receiver.lock:
                    receiver.answered.append(event_id)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Hosts:
    store_url: str
    hub: str
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ, TASKLOOM_TEST_HUB=self.hub, PYTHONUNBUFFERED="1")
        out = open(self.tmp / f"host-{len(self.procs)}.log", "wb")  # noqa: SIM115
        cmd = [sys.executable, "-m", "taskloom", "serve", APP_SPEC, "--store", self.store_url]
        cmd += ["--no-http", "--lease-for", "2", "--poll-interval", "0.1"]
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        out.close()
        self.procs.append(proc)
        return proc

    def alive(self) -> None:
        proc = self.procs[-1]
        assert proc.poll() is None, f"the host exited early:\n{self.output()}"

    def output(self) -> str:
        parts = []
        for i, _ in enumerate(self.procs):
            path = self.tmp / f"host-{i}.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- host {i} ---\n{text[-4000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def hosts(store_url: str, hub: str, tmp_path: Path) -> Iterator[Hosts]:
    h = Hosts(store_url, hub, tmp_path)
    try:
        yield h
    finally:
        h.close()


def test_sigkill_with_webhook_deliveries_in_flight(
    store_url: str, hub: str, receiver: Receiver, hosts: Hosts
) -> None:
    ids = [f"ev-{i:03d}" for i in range(EVENTS)]
    with tl.Client(store_url, hub) as client:
        client.subscribe("orders", "hook", WebhookSpec(receiver.url, timeout=TIMEOUT))
        client.publish(
            "orders", [tl.CloudEvent("order.placed", "/shop", {"i": i}, id=i) for i in ids]
        )

        first = hosts.start()

        def in_flight() -> bool:
            hosts.alive()
            _, answered, held = receiver.snapshot()
            return len(answered) >= 4 and len(held) >= 2

        try:
            wait_until(in_flight, DEADLINE, "deliveries in flight")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{hosts.output()}") from None
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        _, _, cut_off = receiver.snapshot()
        assert cut_off, "nothing was in flight at the kill"
        at_kill = len(receiver.snapshot()[0])
        assert at_kill < EVENTS, "the kill came too late to test anything"

        hosts.start()

        def all_delivered() -> bool:
            hosts.alive()
            received, answered, _ = receiver.snapshot()
            after_kill = Counter(received[at_kill:])
            if set(answered) != set(ids) or not all(after_kill[i] for i in cut_off):
                return False
            (sub,) = client.subscriptions("orders")
            return sub.pending == 0 and sub.lag == 0

        try:
            wait_until(all_delivered, DEADLINE, "every event delivered")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{hosts.output()}") from None

        received, _, _ = receiver.snapshot()
        assert set(received) == set(ids)  # none lost, nothing invented
        counts = Counter(received)
        # At least once: the requests cut off by the kill came again after the restart.
        assert all(counts[i] >= 2 for i in cut_off)
        assert client.dead_letters("orders") == []
