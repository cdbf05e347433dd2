"""The HTTP side: the Durable Functions management API, keys, signed links, user routes."""
