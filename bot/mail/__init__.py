"""E-mail: compose messages from templates, deliver the outbox, and the embedded mail store."""
