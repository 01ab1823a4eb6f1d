"""The staff's pages: log in, users, the dashboard, the send log, previews, supporters."""
