"""The builtin HSS: a simulation that keeps its own state (in its own table), for
demos, tests and benchmarks. It can add latency and fail a share of calls
(``HSS_BUILTIN_LATENCY_MS``, ``HSS_BUILTIN_FAILURE_RATE``), and be taken down altogether
for a while (``outage_start``/``outage_end``, the *Simulated HSS outage* switch in Django
admin, ``manage.py hss_outage``), so that retries, drift and reconcile behave as they
would against a real HSS. Like a real HSS it logs every write with the portal's
operation id."""

import json
import logging
import random
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from telephony.identities.hss.base import (
    DeviceSettings,
    HssBackend,
    HssTransientError,
    SharedAccess,
    Subscription,
)

log = logging.getLogger(__name__)


def _outage_model():
    from telephony.models import SimulatedHssOutage

    return SimulatedHssOutage


def outage_start(*, until: datetime | None = None, reason: str = "") -> None:
    """Take the simulated HSS down, for every process, until ``outage_end`` or ``until``."""
    _outage_model().objects.update_or_create(
        pk=1, defaults={"down": True, "until": until, "reason": reason[:200]}
    )
    log.warning("builtin HSS: outage started (until %s) %s", until or "switched off", reason)


def outage_end() -> None:
    _outage_model().objects.update_or_create(pk=1, defaults={"down": False, "until": None})
    log.warning("builtin HSS: outage ended")


def outage_active() -> bool:
    """Whether the simulated HSS is down now (one indexed lookup per call)."""
    return (
        _outage_model()
        .objects.filter(pk=1, down=True)
        .filter(Q(until=None) | Q(until__gt=timezone.now()))
        .exists()
    )


# How long a backend goes by the outage switch it read. A backend serves one batch of
# pushes (or one reconcile): it reads the switch once, not before every call, and an
# outage switched on or off reaches every worker within this time.
OUTAGE_READ_FOR_SECONDS = 1.0


# What the simulated HSS holds of a subscription, besides its key (msisdn).
HELD = (
    "imsi",
    "impi",
    "impus",
    "enabled",
    "services",
    "display_name",
    "shared_msisdns",
    "devices",
    "operation_id",
)
UPSERT = (
    "INSERT INTO telephony_simulatedsubscription "  # noqa: S608 - fixed column names
    f"(msisdn, {', '.join(HELD)}, updated_at) VALUES (%s, {', '.join(['%s'] * len(HELD))}, %s) "
    "ON CONFLICT (msisdn) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in (*HELD, "updated_at"))
)


class BuiltinHss(HssBackend):
    name = "builtin"

    def __init__(self, latency_ms: float | None = None, failure_rate: float | None = None):
        self.latency_ms = settings.HSS_BUILTIN_LATENCY_MS if latency_ms is None else latency_ms
        self.failure_rate = (
            settings.HSS_BUILTIN_FAILURE_RATE if failure_rate is None else failure_rate
        )
        self._outage: tuple[float, bool] | None = None  # when read, and whether down

    def simulate_conditions(self) -> None:
        """Every call passes here first: the configured latency, an outage, random
        failures. A named seam: a test's backend overrides it to fail on cue."""
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        if self._down():
            raise HssTransientError("simulated HSS outage: the HSS does not answer")
        if self.failure_rate and random.random() < self.failure_rate:  # noqa: S311 - simulation
            raise HssTransientError("simulated HSS failure (HSS_BUILTIN_FAILURE_RATE)")

    def _down(self) -> bool:
        now = time.monotonic()
        if self._outage is None or now - self._outage[0] >= OUTAGE_READ_FOR_SECONDS:
            self._outage = (now, outage_active())
        return self._outage[1]

    @staticmethod
    def _model():
        from telephony.models import SimulatedSubscription

        return SimulatedSubscription

    def upsert(self, subscription: Subscription, *, operation_id: str) -> None:
        self.simulate_conditions()
        held: dict[str, Any] = {
            "imsi": subscription.imsi,
            "impi": subscription.impi,
            "impus": json.dumps(list(subscription.impus)),
            "enabled": subscription.enabled,
            "services": json.dumps(list(subscription.services)),
            "display_name": subscription.display_name,
            "shared_msisdns": json.dumps(
                [[s.msisdn, s.make_calls, s.receive_calls] for s in subscription.shared]
            ),
            "devices": json.dumps(
                [
                    {
                        "device": d.device,
                        "services": list(d.services),
                        "default_impu": d.default_impu,
                        "do_not_disturb": d.do_not_disturb,
                        "ring_priority": d.ring_priority,
                    }
                    for d in subscription.devices
                ]
            ),
            "operation_id": operation_id,
        }
        # One statement (INSERT … ON CONFLICT DO UPDATE), as an HSS's upsert is one write;
        # written out, not built by the ORM for every push (a third of a push's CPU).
        with connection.cursor() as cursor:
            cursor.execute(
                UPSERT,
                [
                    subscription.msisdn,
                    *(held[column] for column in HELD),
                    connection.ops.adapt_datetimefield_value(timezone.now()),
                ],
            )
        log.info("builtin HSS: upsert %s %s", subscription.msisdn, operation_id)

    def remove(self, msisdn: str, *, operation_id: str, keep_imsi: str = "") -> None:
        self.simulate_conditions()
        if self._model().objects.filter(msisdn=msisdn).delete()[0]:
            log.info("builtin HSS: remove %s %s", msisdn, operation_id)

    def get(self, msisdn: str) -> Subscription | None:
        self.simulate_conditions()
        row = self._model().objects.filter(msisdn=msisdn).first()
        return self._subscription(row) if row else None

    def list_all(self) -> Iterable[Subscription]:
        self.simulate_conditions()
        for row in self._model().objects.order_by("msisdn").iterator(chunk_size=500):
            yield self._subscription(row)

    # The simulated network confirms a deregistration at once (a real S-CSCF reports it
    # with a reginfo notification to the network API).
    confirms_deregistration = True

    def deregister(self, msisdn: str, *, imsi: str = "", contact: str = "") -> None:
        self.simulate_conditions()
        self._model().objects.filter(msisdn=msisdn).update(deregistered_at=timezone.now())

    @staticmethod
    def _subscription(row) -> Subscription:
        return Subscription(
            msisdn=row.msisdn,
            imsi=row.imsi,
            impi=row.impi,
            impus=tuple(row.impus),
            enabled=row.enabled,
            services=tuple(row.services),
            display_name=row.display_name,
            shared=tuple(SharedAccess(m, bool(c), bool(r)) for m, c, r in row.shared_msisdns),
            devices=tuple(
                DeviceSettings(**{**d, "services": tuple(d["services"])}) for d in row.devices
            ),
        )
