"""The kernel: what every app builds on; it imports no app.

Modules: ``tenancy`` (TenantQuerySet, get_for_enterprise_or_404, enterprise_of),
``errors`` (RuleViolation, NotAllowed), ``http`` (client_ip, safe redirects), ``pages``
(call_service), ``forms``, ``pagination``, ``ratelimit``, ``credentials`` (secrets and
their hashes), ``csvfile`` (the one hardened CSV reader), ``enqueue`` (a task by its
name), ``jsonrpc`` (the client of the network's management interfaces),
``observability`` (request ids, logs, metrics), ``exports`` (lazy re-exports), ``api/``
(the DRF error handler, strict JSON parser, schema, pagination).

Callers import the module they need; this package re-exports nothing, because its
modules are independent of one another and ``observability`` is loaded by the Celery
app before Django is set up, when most of the others cannot be.
"""
