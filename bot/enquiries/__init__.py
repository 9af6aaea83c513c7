"""Enquiries, the domain: submit, answer, follow-up, close, forget; field rules, countries.

One module per concern (see docs/architecture.md); import the public names from here. The
package sits below the dialogue, the mail and the channels, and imports none of them at
module level (the mail is imported where a mail is built).
"""

from __future__ import annotations

from bot.enquiries.admin_chat import (
    ADMIN_CHAT_KEY,
    admin_chat_id,
    admin_chat_problems,
    follow_admin_chat,
)
from bot.enquiries.answer import (
    answer_enquiry,
    follow_up_enquiry,
    mark_answered,
)
from bot.enquiries.errors import (
    EnquiryError,
    EnquiryLimitError,
)
from bot.enquiries.export import (
    EXPORT_COLUMNS,
    export_csv,
    export_jsonl,
    public_record,
)
from bot.enquiries.lifecycle import (
    close_enquiry,
    erase_enquiries,
    forget_user,
)
from bot.enquiries.queries import (
    count_created_since,
    enquiry_by_id,
    enquiry_deliveries,
    enquiry_for_admin_post,
    enquiry_history,
    get_enquiry,
    list_enquiries,
    user_enquiries,
)
from bot.enquiries.records import (
    ERASED_NOTE,
    FOLLOW_UP_POSTED,
    PERSONAL_COLUMNS,
    POST_ERASED,
    STATUSES,
    WEB_CHANNEL,
    format_ref,
    normalize_ref,
)
from bot.enquiries.rules import (
    DeliveryRules,
    mark_bounced,
)
from bot.enquiries.submit import (
    submit_enquiry,
)

__all__ = [
    "ADMIN_CHAT_KEY",
    "ERASED_NOTE",
    "EXPORT_COLUMNS",
    "FOLLOW_UP_POSTED",
    "PERSONAL_COLUMNS",
    "POST_ERASED",
    "STATUSES",
    "WEB_CHANNEL",
    "DeliveryRules",
    "EnquiryError",
    "EnquiryLimitError",
    "admin_chat_id",
    "admin_chat_problems",
    "answer_enquiry",
    "close_enquiry",
    "count_created_since",
    "enquiry_by_id",
    "enquiry_deliveries",
    "enquiry_for_admin_post",
    "enquiry_history",
    "erase_enquiries",
    "export_csv",
    "export_jsonl",
    "follow_admin_chat",
    "follow_up_enquiry",
    "forget_user",
    "format_ref",
    "get_enquiry",
    "list_enquiries",
    "mark_answered",
    "mark_bounced",
    "normalize_ref",
    "public_record",
    "submit_enquiry",
    "user_enquiries",
]
