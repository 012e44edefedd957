"""Fixtures of the console's tests (the helpers are in tests/console_helpers.py)."""
from console_helpers import client_for, make_console  # noqa: F401
