"""The one error type for business-rule failures.

Services raise it; the API's exception handler turns it into a 400 with a readable
message, and pages show it as a form error. Nothing is changed when it is raised,
because services raise it inside their transaction. ``NotAllowed``, the one kind of
it for "this actor may not do that", is a 403 in the API and a 403 page.
"""


class RuleViolation(Exception):
    """A request that the operator's policy or the domain's rules do not allow."""

    def __init__(self, message: str, *, code: str = "rule_violation", field: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field


class NotAllowed(RuleViolation):
    """The actor may not do this: another enterprise's object, another person's device."""

    def __init__(self, message: str, *, code: str = "not_allowed", field: str | None = None):
        super().__init__(message, code=code, field=field)
