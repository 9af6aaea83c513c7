"""clusterbot: a contact bot for an EU funding-call secretariat."""

__version__ = "0.1.0"
