"""STIR/SHAKEN: PASSporTs, the Identity header, STI certificates and the attestation decision."""
