"""What a valid identity is: the checks every write of identities shares (onboarding one
person or a file's chunk, changing an identity, the import's preview), each the one
place its rule and its words live."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.conf import settings

from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import Enterprise, Service, ServiceContract
from kernel.errors import RuleViolation
from telephony.identities.hss import backend as hss_backend
from telephony.models import Identity

ALIAS_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
# Printable text without control characters; CNAM and RCD carry plain names.
DISPLAY_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]+$")
# Service.values builds its list anew at each call: once here, for each row of an import.
SERVICES = frozenset(Service.values)


def identity_snapshot(identity: Identity) -> dict[str, Any]:
    """What the audit trail shows of an identity."""
    return {
        "tn": identity.tn,
        "imsi": identity.line.imsi if identity.line is not None else "",
        "alias": identity.alias,
        "display_name": identity.display_name,
        "services": sorted(identity.services),
        "status": identity.status,
    }


def locked_contract(enterprise: Enterprise) -> ServiceContract:
    """The contract, locked: identity creation is serialised per enterprise so that
    two concurrent requests cannot both take the last unit of quota."""
    return ServiceContract.objects.select_for_update().get(enterprise=enterprise)


def ensure_may_provision(actor: Actor, enterprise: Enterprise) -> ServiceContract:
    """The actor may create or change identities under the enterprise's contract."""
    account_services.ensure_may_change(actor, enterprise)
    contract = enterprise.contract
    if not contract.may_create_identities:
        raise RuleViolation(
            f"{settings.OPERATOR_NAME}'s contract with {enterprise.name} does not allow it to "
            "create or change identities.",
            code="contract_forbids_identities",
        )
    return contract


def ensure_quota(enterprise: Enterprise, contract: ServiceContract, live: int) -> None:
    """Room for one more identity beside the ``live`` ones."""
    if live >= contract.identity_quota:
        raise RuleViolation(
            f"{enterprise.name} holds {live} identities, its quota is {contract.identity_quota}.",
            code="quota_reached",
        )


def clean_services(contract: ServiceContract, services: list[str]) -> list[str]:
    services = sorted(set(services or []))
    if not services:
        raise RuleViolation("Choose at least one service.", field="services")
    unknown = [s for s in services if s not in SERVICES]
    if unknown:
        raise RuleViolation(f"Unknown services: {', '.join(unknown)}.", field="services")
    refused = [Service(s).label for s in services if not contract.allows(s)]
    if refused:
        raise RuleViolation(
            f"The contract does not include {', '.join(refused)}.",
            code="service_not_in_contract",
            field="services",
        )
    return services


def clean_display_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise RuleViolation("Give the name callers should see.", field="display_name")
    if len(name) > Identity.DISPLAY_NAME_MAX or not DISPLAY_NAME_RE.match(name):
        raise RuleViolation(
            f"A caller name has at most {Identity.DISPLAY_NAME_MAX} printable characters "
            "(the CNAM limit).",
            field="display_name",
        )
    return name


def default_display_name(full_name: str) -> str:
    """The caller name an identity gets when none is given: the name, cut to fit CNAM."""
    return full_name[: Identity.DISPLAY_NAME_MAX].strip()


def clean_alias_syntax(alias: str) -> str:
    """The alias in lower case, if it is a SIP user name that is not a number."""
    alias = (alias or "").strip().lower()
    if alias and (not ALIAS_RE.match(alias) or alias.startswith("+")):
        raise RuleViolation(
            "An alias is a SIP user name of lower-case letters, digits, dots, dashes or "
            "underscores, e.g. rob.smith.",
            field="alias",
        )
    return alias


def clean_alias(enterprise: Enterprise, alias: str, *, taken: Callable[[str], bool]) -> str:
    """The alias in lower case, if it is a SIP user name, the HSS can hold it and no
    live identity of the enterprise has it (``taken(alias)``, which the caller answers)."""
    alias = clean_alias_syntax(alias)
    if not alias:
        return ""
    if not hss_backend().supports_aliases:
        raise RuleViolation(
            "The operator's HSS cannot hold alias identities; leave the alias empty.",
            code="alias_unsupported",
            field="alias",
        )
    if taken(alias):
        raise RuleViolation(f"sip:{alias}@{enterprise.sip_domain} is taken.", field="alias")
    return alias


def ensure_line_given(imsi: str) -> None:
    """An HSS that keys subscriptions by IMSI needs a SIM line for every identity."""
    if not imsi and hss_backend().requires_line:
        raise RuleViolation(
            "The operator's HSS needs a SIM line for every identity.",
            code="line_required",
            field="imsi",
        )
