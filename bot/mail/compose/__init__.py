"""Build the bot's e-mails from templates: pure functions, no I/O besides templates.

One module per concern; every public name is re-exported here, so callers import from
`bot.mail.compose`:

- `headers`: header safety (`ComposeError`), Subject folding, the mail policies;
- `templates`: the Jinja environments (text, autoescaped HTML) and rendering;
- `context`: what templates show of an enquiry (names, transcript, first words, times);
- `message`: the skeleton every mail shares (parts, Date, Message-ID, Reply-To);
- one module per kind of mail: `enquiry`, `reminders` (single and grouped),
  `acknowledgement`, `answer` (the answer and the follow-up), `digest`, `failure`;
- `delivery`: a composed mail as a delivery row, its exact bytes;
- `check`: `check_templates` for `clusterbot check`, `warm_up`, `sample_enquiry`.
"""

from bot.mail.compose.acknowledgement import acknowledgement_mail
from bot.mail.compose.answer import answer_mail, follow_up_mail
from bot.mail.compose.check import check_templates, sample_enquiry, warm_up
from bot.mail.compose.context import (
    DIGEST_QUESTION_CHARS,
    HEADER_KEYS,
    LANGUAGES,
    SUBJECT_ORGANISATION_CHARS,
    SUBJECT_QUESTION_CHARS,
    TRANSCRIPT_ANSWER_CHARS,
    TRANSCRIPT_QUESTION_CHARS,
    TRANSCRIPT_TURNS,
    actor_name,
    country_code,
    country_name,
    first_words,
    language_name,
    transcript,
)
from bot.mail.compose.delivery import KINDS, mail_delivery, message_bytes, needs_utf8
from bot.mail.compose.digest import AnsweredItem, Digest, DigestItem, digest_mail
from bot.mail.compose.enquiry import enquiry_mail
from bot.mail.compose.failure import failure_context, failure_mail, failure_text
from bot.mail.compose.headers import (
    MAX_HEADER_FIELD,
    POLICY,
    SMTP_POLICY,
    SMTP_UTF8_POLICY,
    ComposeError,
    SubjectHeader,
    fold_subject,
    subject_atoms,
)
from bot.mail.compose.reminders import (
    GROUPED_SUBJECT_REFS_CHARS,
    MAX_REFERENCES,
    grouped_reminder_mail,
    reminder_mail,
)

# The compiled templates, for tests that reset them (`_environments.cache_clear()`).
from bot.mail.compose.templates import _environments as _environments

__all__ = [
    "DIGEST_QUESTION_CHARS",
    "GROUPED_SUBJECT_REFS_CHARS",
    "HEADER_KEYS",
    "KINDS",
    "LANGUAGES",
    "MAX_HEADER_FIELD",
    "MAX_REFERENCES",
    "POLICY",
    "SMTP_POLICY",
    "SMTP_UTF8_POLICY",
    "SUBJECT_ORGANISATION_CHARS",
    "SUBJECT_QUESTION_CHARS",
    "TRANSCRIPT_ANSWER_CHARS",
    "TRANSCRIPT_QUESTION_CHARS",
    "TRANSCRIPT_TURNS",
    "AnsweredItem",
    "ComposeError",
    "Digest",
    "DigestItem",
    "SubjectHeader",
    "acknowledgement_mail",
    "actor_name",
    "answer_mail",
    "check_templates",
    "country_code",
    "country_name",
    "digest_mail",
    "enquiry_mail",
    "failure_context",
    "failure_mail",
    "failure_text",
    "first_words",
    "fold_subject",
    "follow_up_mail",
    "grouped_reminder_mail",
    "language_name",
    "mail_delivery",
    "message_bytes",
    "needs_utf8",
    "reminder_mail",
    "sample_enquiry",
    "subject_atoms",
    "transcript",
    "warm_up",
]
