"""What `clusterbot run` refuses to start with (and `check` reports), beyond valid keys."""

from __future__ import annotations

from bot.settings import Settings
from bot.settings.mail import EMBEDDED_SMTP


def run_problems(settings: Settings) -> list[str]:
    """What `clusterbot run` refuses to start with (and `check` reports), each naming the key."""
    telegram = settings.telegram
    problems: list[str] = []
    token_problem = telegram.token_problem
    if token_problem:
        problems.append(token_problem)
    if telegram.admin_chat_id > 0:
        # Positive ids are people's private chats: applicants' messages and the
        # secretariat's would share it, and nobody else of the team would see the posts.
        problems.append(
            f"telegram.admin_chat_id: {telegram.admin_chat_id} is a private chat (a positive "
            "id); use the secretariat's group chat, whose id is negative such as "
            "-1001234567890, or 0 for no admin chat"
        )
    if settings.smtp.host.strip() == "":
        problems.append(
            "smtp.host is empty: e-mails to the secretariat would only be saved as .eml files "
            f"under {settings.mail_dir} and never sent; set smtp.host to your mail server, "
            f'or host = "{EMBEDDED_SMTP}" under [smtp] to keep them there on purpose'
        )
    return problems
