import subprocess
import sys

import pytest

from kernel import enqueue


def test_a_task_is_found_by_the_name_its_messages_carry():
    from telephony.tasks import sync_identity

    found = enqueue.task("telephony.tasks.sync_identity")
    assert found.name == "telephony.tasks.sync_identity"
    assert found is sync_identity._get_current_object()  # what tests patch is what runs


def test_an_unknown_name_is_refused():
    with pytest.raises(KeyError):
        enqueue.task("telephony.tasks.no_such_task")


def test_a_fresh_process_finds_them_without_setting_django_up_again():
    """A web process queues tasks that no module of it imported by hand: the apps
    register theirs when Django starts, and the look-up reconfigures nothing (a second
    django.setup() would reset logging and run the model checks in a request)."""
    code = (
        "import logging, django; django.setup()\n"
        "from kernel import enqueue\n"
        "marker = logging.NullHandler(); logging.getLogger().addHandler(marker)\n"
        "name = enqueue.task('accounts.tasks.deliver_invitation').name\n"
        "assert marker in logging.getLogger().handlers, 'logging was configured again'\n"
        "print(name)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "accounts.tasks.deliver_invitation"
