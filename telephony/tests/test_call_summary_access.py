"""Pentest F-03: the enterprise's call figures are not for employees, in the API as on
the call authentication page."""

import pytest
from django.urls import reverse

from portal.testing import sign_in_verified

pytestmark = pytest.mark.django_db
SUMMARY = "/api/v1/call-records/summary/"


def test_an_employee_gets_no_enterprise_figures(employee_client):
    assert employee_client.get(SUMMARY).status_code == 403
    assert employee_client.get(reverse("telephony:calls")).status_code == 403
    # Their own call records stay readable.
    assert employee_client.get("/api/v1/call-records/").status_code == 200


@pytest.mark.parametrize("role", ["admin", "helpdesk"])
def test_admins_and_helpdesk_see_the_figures(role, request, client):
    browser = sign_in_verified(client, request.getfixturevalue(role))
    response = browser.get(SUMMARY)
    assert response.status_code == 200 and len(response.json()["days"]) == 14
