"""The API fixtures are shared with the tracing tests."""

from tests.api.conftest import api_settings  # noqa: F401
