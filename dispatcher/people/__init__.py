"""Supporters: their fields, imports, consent pages, notices, receipts and retention."""
