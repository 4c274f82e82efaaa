"""Onboarding: a first identity for each joiner, with their account when they have none
yet. One joiner (a form, the API, SCIM) and a chunk of an import's rows take the same
path: what each joiner needs is read for all of them in a fixed handful of locking
queries, the rules (``rules``, ``inventory``) are decided joiner by joiner in the order
they come, as if each were onboarded alone after the ones before it, and what passes is
written with one INSERT per table. So the single path and the import cannot decide
differently, and a chunk of a hundred rows costs about what one row does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models.functions import Upper
from django.utils import timezone

from accounts import audit
from accounts import services as account_services
from accounts.audit import Actor
from accounts.models import Enterprise, Role, ServiceContract, User
from kernel.errors import RuleViolation
from telephony.identities import rules
from telephony.identities import sync as sync_engine
from telephony.inventory import numbers
from telephony.inventory import services as inventory
from telephony.models import Identity, IdentitySync, SimLine, TelephoneNumber


@dataclass(frozen=True)
class Joiner:
    """Who is onboarded and what their first identity holds. ``owner``: an account of
    the enterprise's that gets the identity; else ``email`` names one, or the account
    made for them (``full_name``, ``role``)."""

    services: list[str]
    email: str = ""
    full_name: str = ""
    role: str = Role.EMPLOYEE
    display_name: str = ""
    tn: str = ""
    imsi: str = ""
    alias: str = ""
    owner: User | None = None


Outcome = Identity | RuleViolation


def onboard(
    *, actor: Actor, enterprise: Enterprise, joiners: list[Joiner], send_invitations: bool = True
) -> list[Outcome]:
    """Each joiner's new identity, or the rule it breaks (then nothing is written for
    it). Runs inside the caller's transaction, which holds the locks taken here: the
    contract (the quota), the owners, the chosen numbers and lines."""
    rules.ensure_may_provision(actor, enterprise)
    book = _Book(enterprise, rules.locked_contract(enterprise), joiners)
    outcomes = [book.decide(joiner) for joiner in joiners]
    book.write(actor, send_invitations)
    return outcomes


class _Book:
    """What the joiners' rules read, read once for all of them and kept up to date as
    each joiner is decided; then what the accepted ones write."""

    def __init__(self, enterprise: Enterprise, contract: ServiceContract, joiners: list[Joiner]):
        self.enterprise, self.contract, self.now = enterprise, contract, timezone.now()
        self.identities: list[Identity] = []  # accepted, to write
        self.new_accounts: list[User] = []
        self.taken: set[int] = set()  # numbers given out here
        emails = {j.email.strip().upper() for j in joiners if j.owner is None and j.email}
        found = User.objects.annotate(address=Upper("email")).filter(address__in=emails)
        self.accounts: dict[str, User] = {user.email.upper(): user for user in found}
        # The owners, locked and their status read again: none is offboarded meanwhile.
        owners = {j.owner.pk for j in joiners if j.owner is not None}
        owners |= {u.pk for u in self.accounts.values() if u.enterprise_id == enterprise.pk}
        locked = User.objects.select_for_update().filter(pk__in=owners)
        self.owner_status: dict[int | None, str] = dict(locked.values_list("pk", "status"))
        live = Identity.objects.for_enterprise(enterprise).live()
        self.live = live.count()
        named = {_lenient(rules.clean_alias_syntax, j.alias) for j in joiners} - {None, ""}
        self.aliases = set(live.filter(alias__in=named).values_list("alias", flat=True))
        imsis = {_lenient(numbers.clean_imsi, j.imsi) for j in joiners if j.imsi} - {None}
        pool = SimLine.objects.for_enterprise(enterprise).select_for_update()
        self.lines = {line.imsi: line for line in pool.filter(imsi__in=imsis)}
        held = Identity.objects.filter(line__in=self.lines.values()).values_list("line_id")
        self.lines_in_use = {pk for (pk,) in held}
        tns = {_lenient(_e164, j.tn) for j in joiners if j.tn} - {None}
        ours = TelephoneNumber.objects.for_enterprise(enterprise).select_for_update()
        self.chosen = {number.e164: number for number in ours.filter(e164__in=tns)}
        # Enough for every joiner without a number, were each chosen one among them.
        needing = sum(1 for j in joiners if not j.tn)
        free = inventory.free_numbers(enterprise, self.now)
        self.free = list(free[: needing + len(tns)]) if needing else []
        self.free_from = 0  # self.free before this are all taken

    def decide(self, joiner: Joiner) -> Outcome:
        try:
            identity = self._identity(joiner)
        except RuleViolation as exc:
            return exc
        owner, address = identity.owner, identity.owner.email.upper()
        # Made for this joiner, not one made for an earlier joiner with the same address
        # (a dict look-up: comparing with every new account costs a chunk n² compares).
        if owner.pk is None and self.accounts.get(address) is not owner:
            self.new_accounts.append(owner)
            self.accounts[address] = owner
        self.identities.append(identity)
        self.live += 1
        if identity.alias:
            self.aliases.add(identity.alias)
        if identity.line is not None:
            self.lines_in_use.add(identity.line.pk)
        self.taken.add(identity.number.pk)  # type: ignore[union-attr]
        return identity

    def _identity(self, joiner: Joiner) -> Identity:
        """The joiner's identity, unsaved, in the order the rules are met one by one."""
        enterprise = self.enterprise
        owner = joiner.owner or self._account(joiner)
        status = self.owner_status.get(owner.pk, owner.status)
        if status not in (User.Status.INVITED, User.Status.ACTIVE):
            label = User.Status(status).label.lower()
            raise RuleViolation(f"{owner} is {label}; no new identities.")
        rules.ensure_quota(enterprise, self.contract, self.live)
        services = rules.clean_services(self.contract, joiner.services)
        display_name = rules.clean_display_name(
            joiner.display_name or rules.default_display_name(owner.full_name)
        )
        alias = rules.clean_alias(enterprise, joiner.alias, taken=self.aliases.__contains__)
        rules.ensure_line_given(joiner.imsi)
        line = self._line(joiner.imsi) if joiner.imsi else None
        return Identity(
            enterprise=enterprise,
            owner=owner,
            number=self._number(joiner.tn),
            line=line,
            alias=alias,
            display_name=display_name,
            services=services,
        )

    def _account(self, joiner: Joiner) -> User:
        """The enterprise's member with the joiner's email, else a new account."""
        user = self.accounts.get(joiner.email.strip().upper())
        if user is None:
            email = account_services.normalised_email(joiner.email)
            return account_services.new_member(
                enterprise=self.enterprise,
                email=email,
                full_name=joiner.full_name,
                role=joiner.role,
            )
        return ensure_member(self.enterprise, user)

    def _line(self, imsi: str) -> SimLine:
        imsi = numbers.clean_imsi(imsi)
        line = self.lines.get(imsi)
        in_use = line is not None and line.pk in self.lines_in_use
        return inventory.ensure_line_free(self.enterprise, imsi, line, in_use=in_use)

    def _number(self, tn: str) -> TelephoneNumber:
        if tn:
            e164, _ = numbers.parse_tn(tn)
            number = self.chosen.get(e164)
            if number is not None and number.pk in self.taken:  # given out above: in use
                number.status = TelephoneNumber.Status.ASSIGNED
            return inventory.ensure_number_available(self.enterprise, e164, number, self.now)
        # The taken only grow: a number once skipped stays taken, so look on from there.
        while self.free_from < len(self.free) and self.free[self.free_from].pk in self.taken:
            self.free_from += 1
        if self.free_from == len(self.free):
            raise inventory.no_free_number(self.enterprise)
        return self.free[self.free_from]

    def write(self, actor: Actor, send_invitations: bool) -> None:
        if not self.identities:
            return
        enterprise = self.enterprise
        account_services.members_invited(
            actor=actor, enterprise=enterprise, users=self.new_accounts, send=send_invitations
        )
        given = [identity.number for identity in self.identities if identity.number is not None]
        for number in given:
            number.status = TelephoneNumber.Status.ASSIGNED
            number.quarantined_until = None
        TelephoneNumber.objects.filter(pk__in=[number.pk for number in given]).update(
            status=TelephoneNumber.Status.ASSIGNED, quarantined_until=None
        )
        Identity.objects.bulk_create(self.identities)
        queue = sync_engine.push_queue()
        IdentitySync.objects.bulk_create(
            IdentitySync(identity=identity, enterprise=enterprise, push_queue=queue)
            for identity in self.identities
        )
        sync_engine.queue_pushes_after_commit([identity.pk for identity in self.identities])
        audit.record_many(
            action="identity.created",
            entries=[
                audit.Entry(
                    actor,
                    enterprise,
                    audit.diff({}, rules.identity_snapshot(identity)),
                    target=identity,
                )
                for identity in self.identities
            ],
        )


def existing_member(enterprise: Enterprise, email: str) -> User | None:
    """The enterprise's current member with this email, if any (``ensure_member``)."""
    user = User.objects.filter(email__iexact=email.strip()).first()
    return ensure_member(enterprise, user) if user is not None else None


def ensure_member(enterprise: Enterprise, user: User) -> User:
    """The account with a joiner's email, if it may onboard: an offboarded account, or
    one of another enterprise, is refused (without telling which enterprise)."""
    if user.enterprise_id != enterprise.pk:
        raise RuleViolation(
            account_services.address_unavailable(user.email), code="duplicate", field="email"
        )
    if user.status == User.Status.OFFBOARDED:
        raise RuleViolation(
            f"{user.email} belongs to an offboarded account; use another address.",
            code="offboarded",
            field="email",
        )
    return user


def _e164(tn: str) -> str:
    return numbers.parse_tn(tn)[0]


def _lenient(clean: Callable[[str], str], value: str) -> str | None:
    """``clean(value)``, or None where the value breaks its rule: reading what the
    joiners name skips what ``decide`` will refuse with its reason."""
    try:
        return clean(value)
    except RuleViolation:
        return None
