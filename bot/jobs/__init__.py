"""Scheduled work derived from database rows, one module per job: reminders, the digest,
retention. The app's one scheduler (bot/app.py) decides when each runs."""
