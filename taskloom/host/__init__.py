"""The host: schedules, queue triggers, the HTTP API and keys around the workers."""
