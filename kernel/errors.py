"""The one error type for business-rule failures.

Services raise it; the API's exception handler turns it into a 400 with a readable
message, and pages show it as a form error. Nothing is changed when it is raised,
because services raise it inside their transaction.
"""


class RuleViolation(Exception):
    """A request that the operator's policy or the domain's rules do not allow."""

    def __init__(self, message: str, *, code: str = "rule_violation", field: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
