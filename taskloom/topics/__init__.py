"""CloudEvents topics: event triggers and webhook subscriptions with Event Grid's delivery
(filters, retries with backoff, time to live, dead letters, redrive), following topics kept
in the hub's event log (see ``docs/topics.md``).

This package's ``__init__`` imports nothing; users import the names from :mod:`taskloom`.
"""
