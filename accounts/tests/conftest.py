"""Fixtures for the emailed links' tests: what an access log or a log reader would see."""

import logging

import pytest
from django.core.signals import request_started


@pytest.fixture
def request_lines():
    """What an access log would write: each request's method, path and query."""
    seen = []

    def keep(sender, environ, **kwargs):
        query = environ.get("QUERY_STRING", "")
        seen.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}?{query}")

    request_started.connect(keep)
    yield seen
    request_started.disconnect(keep)


@pytest.fixture
def log_lines():
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(f"{record.name} {record.getMessage()} {record.args!r}")

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield seen
    root.removeHandler(handler)
    root.setLevel(level)
