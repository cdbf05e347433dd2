"""What both stores do for entities (ids ``@name@key``, see ``docs/entities.md``): a
message creates the entity's row, in any way it is inserted (client, episode commit);
instance queries and purges leave entities out unless asked by an ``@`` prefix; an
entity with pending messages is never purged, and a message marks an empty one
``Running`` again."""

from __future__ import annotations

import dataclasses

from store_builders import T0, at, event, lease_all, new_instance

from taskloom.models import Status
from taskloom.storage.base import EpisodeCommit, InstanceQuery, Store

ENTITIES = InstanceQuery(instance_id_prefix="@")


async def ids(store: Store, query: InstanceQuery) -> list[str]:
    return sorted(r.instance_id for r in (await store.query_instances(query, 1000, None)).records)


async def test_a_message_creates_the_entity_row(store: Store) -> None:
    await store.enqueue_messages([event("@counter@a"), event("@counter@a", "again"), event("x")])
    rec = await store.get_instance("@counter@a")
    assert rec is not None and rec.name == "counter" and rec.status is Status.COMPLETED
    assert await store.get_instance("x") is None  # orchestrations still are not
    episode = (await lease_all(store))["@counter@a"]
    assert [m.event.name for m in episode.messages] == ["go", "again"]


async def test_an_episode_commit_creates_entity_rows(store: Store) -> None:
    await store.create_instance(new_instance("orch-1"))
    episode = (await lease_all(store))["orch-1"]
    done = EpisodeCommit(
        dataclasses.replace(episode.instance, status=Status.RUNNING, updated_at=at(1)),
        episode.lease_token,
        [m.id for m in episode.messages],
        messages=[event("@counter@b", when=at(1)), event("@account@c", when=at(1))],
    )
    assert await store.complete_episodes([done], at(1)) == [True]
    assert await ids(store, ENTITIES) == ["@account@c", "@counter@b"]
    leased = await lease_all(store, at(2))
    assert sorted(leased) == ["@account@c", "@counter@b"]


async def test_queries_and_purges_leave_entities_out(store: Store) -> None:
    await store.create_instance(new_instance("orch-1"))
    await store.enqueue_messages([event("@counter@a")])
    assert await ids(store, InstanceQuery()) == ["orch-1"]
    assert await ids(store, InstanceQuery(instance_id_prefix="@count")) == ["@counter@a"]
    assert await ids(store, ENTITIES) == ["@counter@a"]
    # An empty entity (Completed) with a message waiting is not purged, by any query.
    assert await store.purge_instances(InstanceQuery()) == 0
    assert await store.purge_instances(ENTITIES) == 0
    assert await store.get_instance("@counter@a") is not None


async def test_empty_entities_are_purged_once_their_inbox_is_empty(store: Store) -> None:
    await store.enqueue_messages([event("@counter@a"), event("@counter@b")])
    leased = await lease_all(store, at(1))
    commits = []
    for iid, episode in leased.items():
        status = Status.COMPLETED if iid == "@counter@a" else Status.RUNNING
        instance = dataclasses.replace(episode.instance, status=status, updated_at=at(1))
        commits.append(
            EpisodeCommit(instance, episode.lease_token, [m.id for m in episode.messages])
        )
    assert await store.complete_episodes(commits, at(1)) == [True, True]
    assert await store.purge_instances(ENTITIES) == 1  # the empty one, not the Running one
    assert await ids(store, ENTITIES) == ["@counter@b"]


async def test_a_message_marks_an_empty_entity_running(store: Store) -> None:
    await store.enqueue_messages([event("@counter@a")])
    episode = (await lease_all(store, at(1)))["@counter@a"]
    empty = dataclasses.replace(episode.instance, status=Status.COMPLETED, completed_at=at(1))
    commit = EpisodeCommit(empty, episode.lease_token, [m.id for m in episode.messages])
    assert await store.complete_episodes([commit], at(1)) == [True]
    assert (await store.get_instance("@counter@a")).status is Status.COMPLETED  # type: ignore[union-attr]
    await store.enqueue_messages([event("@counter@a", "more", when=T0)])
    rec = await store.get_instance("@counter@a")
    assert rec is not None and rec.status is Status.RUNNING and rec.completed_at is None
