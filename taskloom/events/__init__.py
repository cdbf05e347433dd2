"""The event store: versioned streams in one append-only log per hub, projections that
keep document read models, and subscriptions that follow the log (see ``docs/events.md``).

This package's ``__init__`` imports nothing, so the storage layer can import the records
of :mod:`taskloom.events.records` without pulling in the client-level modules above it;
users import the names from :mod:`taskloom`.
"""
