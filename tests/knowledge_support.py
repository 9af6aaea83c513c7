"""What the product requires of every knowledge base (PRODUCT.md §7), for the tests."""

from __future__ import annotations

# The topic ids that must exist (PRODUCT.md §7). The code knows no topic: the FAQ file lists
# them under `topics`, and these tests hold the shipped file to the product's list.
REQUIRED_IDS = (
    "programme",
    "objective",
    "specific-objective",
    "activities",
    "clusterxchange",
    "eligibility",
    "countries",
    "budget",
    "max-grant",
    "funded-proposals",
    "funding-rate",
    "deadline",
    "how-to-apply",
    "contact",
)
