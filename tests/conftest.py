"""Fixtures shared by unit and integration tests."""

from tests.webhook import hook  # noqa: F401 (a fixture: the webhook receiver on 127.0.0.1)
