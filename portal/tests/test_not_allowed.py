"""NotAllowed is a RuleViolation that every front door answers with 403."""

from kernel.api.errors import exception_handler
from kernel.errors import NotAllowed, RuleViolation
from scim.errors import exception_handler as scim_exception_handler


def test_the_api_answers_not_allowed_403_and_other_violations_400():
    refused = exception_handler(NotAllowed("Not your device."), {})
    assert refused.status_code == 403
    assert refused.data == {"status": 403, "code": "not_allowed", "detail": "Not your device."}
    broken = exception_handler(RuleViolation("Quota reached.", code="quota"), {})
    assert (broken.status_code, broken.data["code"]) == (400, "quota")


def test_scim_answers_not_allowed_403_in_its_own_error_body():
    refused = scim_exception_handler(NotAllowed("Not your enterprise."), {})
    assert refused.status_code == 403
    assert refused.data["status"] == "403"
    assert refused.data["detail"] == "Not your enterprise."
