"""Scheduled work derived from database rows, one module per job: reminders, the digest,
retention. The app's one scheduler (bot/app/schedule.py) decides when each runs."""
