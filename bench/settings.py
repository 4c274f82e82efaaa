"""Settings of the benchmarks' deployment: the product's, plus the bench app and its
commands (bench_data). Only the benchmarks use this module; the product never installs
the bench app, so its data command (which may lift the audit log's append-only trigger
and delete `bench-` enterprises) does not ship with it."""

from portal.settings import *  # noqa: F403
from portal.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench"]
