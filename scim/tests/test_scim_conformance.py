"""scim2-tester (PyPI) against a live server: every check passes except the deliberate
deviations that docs/scim.md lists with their RFC clause. The set of failures is
asserted exactly, so a new failure fails this test, and so does a deviation that has
gone away (then take it out of docs/scim.md too)."""

import re
import uuid
from collections.abc import Sequence

import httpx2
import pytest
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import Role

pytestmark = [pytest.mark.peer, pytest.mark.django_db(transaction=True)]

# (resource type, check, attribute): each documented in docs/scim.md, "Deviations".
EXPECTED_FAILURES = {
    # Passwords are set by the person through their invitation (changePassword: false).
    ("User", "check_add_attribute", "password"),
    ("User", "check_replace_attribute", "password"),
    # Always assigned here: the person's name, the account's state (RFC 7644 §3.5.2.2).
    ("User", "check_remove_attribute", "displayName"),
    ("User", "check_remove_attribute", "active"),
    # members.display is readOnly, filled from the user's name (RFC 7643 §2.2).
    ("Group", "check_add_attribute", "members"),
    ("Group", "check_replace_attribute", "members"),
}


class FreshAddresses(Sequence):
    """A new address at each draw, for the tester's random.choice over examples."""

    def __len__(self):
        return 1_000_000

    def __getitem__(self, index):
        return f"{uuid.uuid4().hex}@swift.example"


def _key(result) -> tuple[str | None, str, str]:
    """(resource type, check, attribute): one check title covers every attribute."""
    attribute = re.search(r"attribute '([^']+)'|value for '([^']+)'", result.reason or "")
    return (
        result.resource_type,
        result.title,
        next(filter(None, attribute.groups()), "") if attribute else "",
    )


def test_scim2_tester_finds_only_the_documented_deviations(live_server, enterprise, admin):
    _, raw = account_services.api_token_create(
        actor=Actor.system(), enterprise=enterprise, name="IdP", role=Role.ADMIN, purpose="scim"
    )
    with httpx2.Client(
        base_url=f"{live_server.url}/scim/v2",
        headers={"Authorization": f"Bearer {raw}"},
        timeout=30,
    ) as http:
        client = SyncSCIMClient(http)
        client.discover()
        # userName is the sign-in email here (docs/scim.md): the tester's random
        # userNames must look like one.
        user_name = client.get_resource_model("User").model_fields["user_name"]
        user_name.examples = FreshAddresses()
        results = check_server(client)
    failed = {Status.ERROR, Status.CRITICAL}
    failures = {_key(r): r.reason for r in results if r.status in failed}
    assert len(results) > 100, "the tester ran only part of its checks"
    unexpected = {k: v for k, v in failures.items() if k not in EXPECTED_FAILURES}
    assert not unexpected, "\n".join(f"{k}: {v}" for k, v in unexpected.items())
    assert set(failures) == EXPECTED_FAILURES, (
        "a documented deviation has gone: update docs/scim.md"
    )
