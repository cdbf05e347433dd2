"""The PostgreSQL store's Announcer: one notification in flight per process, and commits
that carry their own notification when it is idle."""

from __future__ import annotations

import asyncio

from taskloom.storage.postgres_notify import Announcer


class Sender:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, kinds: str) -> None:
        await self.gate.wait()
        self.sent.append(kinds)


async def _drain(announcer: Announcer) -> None:
    await announcer.close()


async def test_an_idle_announcer_lets_one_commit_carry_the_notification() -> None:
    send = Sender()
    announcer = Announcer(send)
    assert announcer.claim()
    assert not announcer.claim()  # one claimed commit at a time
    announcer.announce("e")  # another commit meanwhile: waits for the claimed one
    await asyncio.sleep(0)
    assert send.sent == []
    announcer.settle("es", "es")  # the commit notified what it needed
    await _drain(announcer)
    assert send.sent == ["e"]  # only what waited meanwhile goes on its own
    assert announcer.sent == 2


async def test_what_a_commit_needed_beyond_what_it_sent_is_announced() -> None:
    send = Sender()
    announcer = Announcer(send)
    assert announcer.claim()
    announcer.settle("s", "sea")
    await _drain(announcer)
    assert send.sent == ["ea"]


async def test_a_failed_claimed_commit_sends_nothing_of_its_own() -> None:
    send = Sender()
    announcer = Announcer(send)
    assert announcer.claim()
    announcer.settle("", "")
    await _drain(announcer)
    assert send.sent == [] and announcer.sent == 0
    assert announcer.claim()  # free again


async def test_no_claim_while_a_notification_is_in_flight() -> None:
    send = Sender()
    send.gate.clear()
    announcer = Announcer(send)
    announcer.announce("e")
    await asyncio.sleep(0)
    assert not announcer.claim()
    send.gate.set()
    await _drain(announcer)
    assert announcer.claim()
