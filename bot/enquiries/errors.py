"""Errors a user, admin or operator can cause, with a code a channel can translate."""

from __future__ import annotations


class EnquiryError(Exception):
    """An error the user (applicant, admin or operator) caused; the message says what.

    `code` and `params` let a channel say the same in the reader's language (the admin
    chat's texts are keyed `error_<code>`); the message is the English wording.
    """

    def __init__(self, message: str, code: str = "", **params: str) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


class EnquiryLimitError(EnquiryError):
    """The applicant reached the daily number of enquiries."""
