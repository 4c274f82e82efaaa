import pytest


@pytest.fixture(autouse=True)
def _bench_app_installed(settings):
    """The bench app, as bench/settings.py installs it for the benchmarks."""
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "bench"]
