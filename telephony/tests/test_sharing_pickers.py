"""The sharing pickers of a big enterprise: the page carries no suggestions once the
candidates pass kernel.forms.SUGGESTIONS_IN_PAGE, and the input asks the server, which
answers only what the same field would accept for the same user."""

import re

import pytest
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import User
from accounts.tests.factories import UserFactory, people
from kernel.forms import SUGGESTIONS_ANSWERED, SUGGESTIONS_IN_PAGE
from portal.testing import sign_in_verified
from telephony.identities import services
from telephony.models import Grant
from telephony.tests.factories import give_numbers, make_identity

pytestmark = pytest.mark.django_db

GRANTEE = "telephony:grant_suggestions"


@pytest.fixture
def numbers(enterprise):
    return give_numbers(enterprise)


@pytest.fixture
def shareable(employee, numbers):
    """Rob's identity: without one to share, the Sharing page offers no form."""
    return make_identity(employee)


def suggested(client, url: str, typed: str) -> list[tuple[str, str]]:
    response = client.get(url, {"q": typed})
    assert response.status_code == 200, response.content
    return [(s["value"], s["label"]) for s in response.json()["suggestions"]]


def grantees(client, typed: str) -> list[tuple[str, str]]:
    return suggested(client, reverse(GRANTEE, args=["grantee"]), typed)


def datalist(html: str, field: str) -> str:
    found = re.search(rf'<datalist id="id_{field}-choices">(.*?)</datalist>', html, re.S)
    assert found, f"no picker for {field}"
    return found.group(1)


def test_a_small_enterprises_picker_carries_its_suggestions_and_asks_nobody(
    admin_client, enterprise, employee, numbers
):
    make_identity(employee)
    html = admin_client.get(reverse("telephony:grants")).content.decode()
    assert f'<option value="{employee.email}">Rob Smith</option>' in datalist(html, "grantee")
    assert "data-suggestions" not in html


def test_above_the_limit_the_sharing_page_does_not_grow_with_the_enterprise(
    admin_client, enterprise, employee, numbers, django_assert_max_num_queries
):
    make_identity(employee)
    people(enterprise, SUGGESTIONS_IN_PAGE)  # with the admin and Rob: over the limit
    url = reverse("telephony:grants")
    with django_assert_max_num_queries(20) as captured:
        above = admin_client.get(url).content.decode()
    people(enterprise, 3 * SUGGESTIONS_IN_PAGE, first=SUGGESTIONS_IN_PAGE)
    with django_assert_max_num_queries(len(captured)):
        far_above = admin_client.get(url).content.decode()

    assert len(far_above) == len(above)
    assert datalist(above, "grantee") == ""
    source = reverse(GRANTEE, args=["grantee"])
    assert f'list="id_grantee-choices" data-suggestions="{source}"' in above
    assert "Person 00001" not in above
    # The identities are still few: the page carries them.
    assert datalist(above, "identity").count("<option") == 1


def test_the_identity_page_asks_for_colleagues_above_the_limit(
    admin_client, enterprise, employee, numbers
):
    identity = make_identity(employee)
    people(enterprise, SUGGESTIONS_IN_PAGE)
    html = admin_client.get(reverse("telephony:identity_detail", args=[identity.pk])).content
    source = reverse("telephony:identity_share_suggestions", args=[identity.pk, "grantee"])
    assert f'data-suggestions="{source}"'.encode() in html
    assert b"Person 00001" not in html


def test_colleagues_are_suggested_by_name_or_email_those_it_starts_first(
    admin_client, enterprise, other_enterprise, shareable
):
    for name, email in [
        ("Joanna Jones", "jj@swift.example"),
        ("Sam Annan", "sam@swift.example"),
        ("Anna Berg", "berg@swift.example"),
        ("Bo Stark", "bo.hannes@swift.example"),
    ]:
        UserFactory(enterprise=enterprise, full_name=name, email=email)
    assert [label for _, label in grantees(admin_client, " ANN ")] == [
        "Anna Berg",  # the name starts with it
        "Sam Annan",  # a word of the name does
        "Bo Stark",  # the email holds it
        "Joanna Jones",  # the name holds it
    ]
    assert grantees(admin_client, "bo.ha") == [("bo.hannes@swift.example", "Bo Stark")]


def test_another_enterprises_people_are_never_suggested(
    admin_client, enterprise, other_enterprise, shareable
):
    UserFactory(enterprise=enterprise, full_name="Cora Colleague", email="cora@swift.example")
    UserFactory(enterprise=other_enterprise, full_name="Cora Stranger", email="cora@other.example")
    people(other_enterprise, SUGGESTIONS_IN_PAGE + 1)
    assert grantees(admin_client, "cora") == [("cora@swift.example", "Cora Colleague")]
    assert grantees(admin_client, "person") == []
    assert grantees(admin_client, "other.example") == []


def test_only_active_people_are_suggested(admin_client, enterprise, shareable):
    for status in User.Status.values:
        UserFactory(enterprise=enterprise, full_name=f"Una {status}", status=status)
    assert [label for _, label in grantees(admin_client, "Una")] == ["Una active"]


def test_an_employee_is_suggested_colleagues_but_not_themself_nor_others_identities(
    client, enterprise, employee, numbers
):
    UserFactory(enterprise=enterprise, full_name="Rob Roberts", email="rr@swift.example")
    make_identity(UserFactory(enterprise=enterprise, full_name="Robin Owner"))
    make_identity(employee)
    sign_in_verified(client, employee)
    assert [label for _, label in grantees(client, "rob")] == ["Rob Roberts", "Robin Owner"]
    # An employee picks among their own identities from a list: nothing to ask.
    identity = client.get(reverse(GRANTEE, args=["identity"]), {"q": "rob"})
    assert identity.status_code == 404


def test_who_has_nothing_to_share_is_suggested_nobody(client, enterprise, employee, helpdesk):
    UserFactory(enterprise=enterprise, full_name="Cora Colleague")
    for member in (employee, helpdesk):  # without an identity the page offers no form
        sign_in_verified(client, member)
        assert client.get(reverse(GRANTEE, args=["grantee"]), {"q": "cora"}).status_code == 404


def test_an_admin_finds_identities_by_owner_or_number_only_active_ones_of_the_enterprise(
    admin_client, admin, enterprise, other_enterprise, employee, numbers
):
    robs = make_identity(employee)  # +4930123400
    suspended = make_identity(UserFactory(enterprise=enterprise, full_name="Rob Suspended"))
    services.identity_suspend(actor=Actor(user=admin), identity=suspended)
    give_numbers(other_enterprise, "+4930123500", "+4930123599")
    make_identity(UserFactory(enterprise=other_enterprise, full_name="Rob Stranger"))
    url = reverse(GRANTEE, args=["identity"])
    expected = [(robs.tn, f"Rob Smith · {robs.tn}")]
    assert suggested(admin_client, url, "rob") == expected
    assert suggested(admin_client, url, "+49 (30) 1234") == expected
    assert suggested(admin_client, url, "301235") == []


def test_at_most_a_handful_is_answered(admin_client, enterprise, shareable):
    people(enterprise, SUGGESTIONS_ANSWERED + 5)
    answered = grantees(admin_client, "person")
    assert len(answered) == SUGGESTIONS_ANSWERED
    assert answered[0] == ("person00000@swift.example", "Person 00000")


def test_the_answer_holds_the_key_and_label_only_and_is_not_kept(admin_client, employee, shareable):
    response = admin_client.get(reverse(GRANTEE, args=["grantee"]), {"q": "rob"})
    assert response.json() == {"suggestions": [{"value": employee.email, "label": "Rob Smith"}]}
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]


@pytest.mark.parametrize("typed", [None, "", " r ", "r" * 101])
def test_a_query_under_two_characters_or_too_long_is_a_clear_400(admin_client, shareable, typed):
    params = {} if typed is None else {"q": typed}
    response = admin_client.get(reverse(GRANTEE, args=["grantee"]), params)
    assert response.status_code == 400
    assert response.json() == {"error": "Type 2 to 100 characters."}


def test_suggestions_are_read_only_and_only_for_a_suggested_field(admin_client, shareable):
    url = reverse(GRANTEE, args=["grantee"])
    assert admin_client.post(url, {"q": "rob"}).status_code == 405
    for field in ("can_make_calls", "valid_until", "nothing"):
        assert admin_client.get(reverse(GRANTEE, args=[field]), {"q": "rob"}).status_code == 404


def test_suggestions_need_the_sign_in_and_second_factor_the_page_needs(client, admin, shareable):
    url = reverse(GRANTEE, args=["grantee"])
    response = client.get(url, {"q": "rob"})
    assert response.status_code == 302 and "/login/" in response["Location"]
    client.force_login(admin, backend="accounts.backends.EmailBackend")  # no second factor yet
    response = client.get(url, {"q": "rob"})
    assert response.status_code == 302 and "/account/2fa/" in response["Location"]


def test_the_identity_page_suggests_the_owners_colleagues_to_its_admins_only(
    client, admin, enterprise, employee, numbers
):
    identity = make_identity(employee)
    UserFactory(enterprise=enterprise, full_name="Rob Roberts", email="rr@swift.example")
    url = reverse("telephony:identity_share_suggestions", args=[identity.pk, "grantee"])
    sign_in_verified(client, admin)
    assert suggested(client, url, "rob") == [("rr@swift.example", "Rob Roberts")]  # not Rob
    hidden = reverse("telephony:identity_share_suggestions", args=[identity.pk, "identity"])
    assert client.get(hidden, {"q": "rob"}).status_code == 404
    services.identity_suspend(actor=Actor(user=admin), identity=identity)
    assert client.get(url, {"q": "rob"}).status_code == 404  # no sharing form there now
    sign_in_verified(client, employee)
    assert client.get(url, {"q": "rob"}).status_code == 403


def test_a_suggestion_taken_from_the_server_is_accepted_by_the_form(
    admin_client, enterprise, employee, numbers
):
    shared = make_identity(employee)
    people(enterprise, SUGGESTIONS_IN_PAGE)
    ((email, _),) = grantees(admin_client, "Person 00042")
    response = admin_client.post(
        reverse("telephony:grants"),
        {"identity": shared.tn, "grantee": email, "can_make_calls": "on"},
    )
    assert response.status_code == 302
    assert Grant.objects.get().grantee.email == email
