"""Browser viewer (viser) for trained runs."""
