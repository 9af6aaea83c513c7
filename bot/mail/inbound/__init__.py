"""Inbound mail: the secretariat's e-mail replies, read from the bot's mailbox.

Pure steps first (parse, classify, extract the answer, match the enquiry), then one
transaction that records the mail and its effect (`process.py`); the reader
(`watcher.py`, over the IMAP client `imap.py`) only fetches bytes and advances its
cursor (`cursor.py`) in that same transaction.
"""
