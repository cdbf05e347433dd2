"""CloudEvents 1.0: the event record, strict validation, and the JSON, batch, binary-mode
HTTP and Event Grid formats. Pure: no I/O, no clock.

This package's ``__init__`` imports nothing; users import the names from :mod:`taskloom`.
"""
