"""SCIM 2.0 service provider (RFC 7643/7644) for enterprises' identity providers."""
