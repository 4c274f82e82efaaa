"""Bearer secrets: generated once, shown once, stored only as a hash.

Used by API tokens, invitation links and, later, network-client and SCIM tokens.
The secrets are 256-bit random values, so a plain SHA-256 is enough to store them:
there is nothing to brute-force that a slow hash would protect.
"""

import hashlib
import hmac
import secrets


def new_secret(prefix: str) -> tuple[str, str]:
    """A fresh secret with a readable prefix, and its hash for storage."""
    raw = f"{prefix}_{secrets.token_urlsafe(32)}"
    return raw, hash_secret(raw)


def hash_secret(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def secret_matches(raw: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(raw), stored_hash)
