"""The app ``taskloom serve`` runs in tests/e2e/test_webhook_crash.py: no handlers of its
own; the host delivers the hub's webhook subscriptions (serve always does). The hub is
``TASKLOOM_TEST_HUB``."""

from __future__ import annotations

import os

import taskloom as tl

app = tl.App(os.environ.get("TASKLOOM_TEST_HUB", "webhookcrash"))
