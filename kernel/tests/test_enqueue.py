import subprocess
import sys
from contextlib import contextmanager

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


@pytest.fixture
def through_the_broker():
    """Tasks go to the configured broker instead of running eagerly; what goes to the
    returned queue is read back by ``queued``."""
    from portal.celery import app

    app.conf.task_always_eager = False
    try:
        yield "enqueue-test"
    finally:
        app.conf.task_always_eager = True
        queued("enqueue-test")  # nothing left for the next test


def queued(queue: str) -> list[list]:
    """The arguments of the messages waiting on ``queue``, taken off it in order."""
    from portal.celery import app

    found = []
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            args, _kwargs, _embed = message.decode()
            found.append(args)
    return sorted(found)


def test_messages_sent_together_all_reach_the_broker(through_the_broker):
    task = enqueue.task("telephony.tasks.sync_identities")

    enqueue.apply_together(task, [([1, 2], "bulk"), ([3], "bulk")], queue=through_the_broker)

    assert queued(through_the_broker) == [[[1, 2], "bulk"], [[3], "bulk"]]


def test_messages_a_batch_failed_to_send_are_sent_one_by_one(through_the_broker, monkeypatch):
    from kombu.messaging import Producer

    @contextmanager
    def broken_batch(producer, max_size=1000):
        yield  # publishes run immediately here; the "flush" then fails, as a broker may
        raise ConnectionError("broker went away")

    monkeypatch.setattr(Producer, "batch", broken_batch)
    task = enqueue.task("telephony.tasks.sync_identities")

    enqueue.apply_together(task, [([1], ""), ([2], "")], queue=through_the_broker)

    # Sent twice (before the failure, and again one by one): harmless, none is lost.
    assert queued(through_the_broker) == [[[1], ""], [[1], ""], [[2], ""], [[2], ""]]
