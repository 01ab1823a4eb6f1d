"""The supporters' own pages: opt in, confirm, withdraw."""
