"""call_service: the one way a page calls a service and tells the outcome."""

import pytest
from django import forms
from django.contrib.messages import get_messages
from django.contrib.messages.storage.cookie import CookieStorage
from django.test import RequestFactory

from kernel.errors import NotAllowed, RuleViolation
from kernel.forms import PortalForm
from kernel.pages import call_service


class NameForm(PortalForm):
    name = forms.CharField()


@pytest.fixture
def request_():
    request = RequestFactory().post("/")
    request._messages = CookieStorage(request)
    return request


def flashed(request):
    return [(m.level_tag, m.message) for m in get_messages(request)]


def refuse(exc):
    def action():
        raise exc

    return action


def test_a_done_service_returns_its_result_and_flashes_success(request_):
    assert call_service(request_, lambda: 3, success=lambda n: f"{n} made.") == 3
    assert flashed(request_) == [("success", "3 made.")]


def test_a_refusal_is_flashed_as_an_error_and_returns_none(request_):
    assert call_service(request_, refuse(RuleViolation("Quota reached.")), success="x") is None
    assert flashed(request_) == [("error", "Quota reached.")]


def test_with_a_form_the_refusal_lands_on_its_field(request_):
    form = NameForm({"name": "Rob"})
    assert form.is_valid()
    result = call_service(request_, refuse(RuleViolation("Taken.", field="name")), form=form)
    assert result is None
    assert form.errors == {"name": ["Taken."]}
    assert flashed(request_) == []


def test_not_allowed_goes_on_to_the_403_page(request_):
    with pytest.raises(NotAllowed):
        call_service(request_, refuse(NotAllowed("Not yours.")), form=NameForm({"name": "x"}))
    assert flashed(request_) == []
