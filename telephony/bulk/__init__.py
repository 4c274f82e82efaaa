"""Bulk: importing employees from a CSV file and exporting them to one.

Modules: ``services`` (the file, its preview, the import job run in chunks, the export
query), ``views`` (their pages). Other packages use these modules as they are
(``from telephony.bulk import services as bulk``); no name of theirs is used alone.
"""
