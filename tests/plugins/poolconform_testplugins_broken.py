"""A test-only plug-in whose import fails: its framework is not installed."""

import poolconform_framework_that_is_not_installed  # noqa: F401

class BrokenBackend:
    name = "test-broken"
