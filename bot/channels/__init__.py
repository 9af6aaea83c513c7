"""Channels: thin adapters that carry dialogue events and replies (console, Telegram)."""
