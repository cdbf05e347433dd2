"""Durable entities: small addressable state machines (counters, accounts, per-key
aggregators) that run through the same inbox, episode and lease machinery as
orchestrations. See ``docs/entities.md``.

- :mod:`~taskloom.entities.records`: ``EntityId`` and the records clients see.
- :mod:`~taskloom.entities.protocol`: the messages between instances (operations, lock
  requests, releases, replies) and the entity's scheduler state.
- :mod:`~taskloom.entities.context`: ``EntityContext`` and the class style's ``Entity``.
- :mod:`~taskloom.entities.executor`: applies one batch of operations (pure).
- :mod:`~taskloom.entities.tasks`: what orchestrators yield for calls and locks.
- :mod:`~taskloom.entities.episodes`: one entity episode, leased batch -> commit (pure).
- :mod:`~taskloom.entities.client`: the clients' entity methods.
"""
