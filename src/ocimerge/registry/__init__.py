"""The registry client, layered: challenge/credentials (no HTTP), transport and auth (HTTP),
api (one function per endpoint)."""
