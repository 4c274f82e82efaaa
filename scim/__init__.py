"""SCIM 2.0 service provider (RFC 7643/7644) for enterprises' identity providers.

Modules: ``urls`` and ``views`` (the endpoints under /scim/v2/), ``protocol`` (bodies,
answers, token roles, list query parameters), ``documents`` (what a provider sends, read
into drafts), ``patch`` (PATCH applied to the representation), ``filters`` (filter
parsing and evaluation), ``schema`` (the schemas served, attribute paths),
``resources`` (how users and groups read, entity tags), ``selectors`` (reads),
``services`` (writes, through accounts and telephony services), ``errors`` (SCIM error
answers). Only the shell uses it, by ``include("scim.urls")``; no other package imports
it, so nothing is re-exported.
"""
