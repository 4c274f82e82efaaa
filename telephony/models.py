"""Number blocks and lines, identities, grants, HSS sync, registrations and call
authentication live here as they are built."""
