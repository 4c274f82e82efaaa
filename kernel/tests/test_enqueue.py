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


def test_a_process_that_never_imported_the_tasks_finds_them():
    """A web process queues tasks whose module it has not imported: autodiscovery runs."""
    code = (
        "import sys, django; django.setup()\n"
        "from kernel import enqueue\n"
        "assert 'accounts.tasks' not in sys.modules\n"
        "print(enqueue.task('accounts.tasks.deliver_invitation').name)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "accounts.tasks.deliver_invitation"
