"""The secretariat's answer, clean: HTML to text, the quoted original and signatures removed.

Quote and signature detection is mail-parser-reply's (maintained; knows the Italian and
English "On ... wrote:" / "Il giorno ... ha scritto:" lines and Outlook's From:/Da: blocks).
HTML becomes text with html2text (pure Python, no dependencies); it writes Markdown, so its
escapes and link syntax are turned back into plain text here.
"""

from __future__ import annotations

import re
from typing import Any

import html2text
from mailparser_reply import EmailMessage

LANGUAGES = ["it", "en"]
# An answer longer than this is cut: a chat message has limits, the full mail is kept.
MAX_ANSWER = 3500

_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!>])")
_MD_LINK = re.compile(r"\[([^\[\]\n]*)\]\((\S+?)\)")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^<>\s]+)>")
_QUOTED = re.compile(r"^\s*>")
_BLANK_RUN = re.compile(r"\n{3,}")


def _html2text() -> html2text.HTML2Text:
    converter = html2text.HTML2Text()
    converter.body_width = 0  # no re-wrapping: line breaks stay where the writer put them
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.ignore_tables = True
    converter.unicode_snob = True
    converter.inline_links = True
    # A <div> or <p> is one line in mail clients (Gmail, Outlook): no blank line after each.
    converter.single_line_break = True
    return converter


def _link(match: re.Match[str]) -> str:
    label, url = match.group(1).strip(), match.group(2)
    target = url.removeprefix("mailto:")
    if not label or label in (url, target):
        return target
    return f"{label} ({target})"


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML mail body (blockquotes become '> ' lines)."""
    text = _html2text().handle(html)
    text = _MD_LINK.sub(_link, text)
    text = _AUTOLINK.sub(lambda m: m.group(1).removeprefix("mailto:"), text)
    text = _MD_ESCAPE.sub(r"\1", text)
    lines = [line.rstrip().replace("\xa0", " ").rstrip() for line in text.splitlines()]
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip()


# Closing lines mail-parser-reply does not know (it has "Cordiali saluti", "Best regards"...):
# a line that is only one of these, near the end, starts the signature.
_CLOSING = re.compile(
    r"^(?:saluti|un saluto|cari saluti|distinti saluti|cordialmente|buona giornata|buon lavoro"
    r"|a presto|grazie(?: e saluti)?|regards|many thanks|thanks|cheers|best wishes"
    r"|warm regards|kind regards|yours sincerely|sincerely)[ ,.!]*$",
    re.IGNORECASE,
)
_CLOSING_WINDOW = 6


def _cut_closing(text: str) -> str:
    lines = text.split("\n")
    filled = [i for i, line in enumerate(lines) if line.strip()]
    for index in filled[1:][-_CLOSING_WINDOW:]:
        if _CLOSING.match(lines[index].strip()):
            return "\n".join(lines[:index]).strip()
    return text


def _replies(text: str) -> list[Any]:
    # keep_hyphen_lists: a "- item" list in an answer is content, not a signature.
    message = EmailMessage(text=text, languages=list(LANGUAGES), keep_hyphen_lists=True)
    return list(message.read().replies)


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip()


def _inline_answers(section: str) -> str:
    """The writer's lines of an inline reply, each answer under the quote it answers.

    Quoted blocks followed by an answer are kept as context ('> ' lines); quoted blocks
    nobody answered are dropped.
    """
    blocks: list[tuple[bool, list[str]]] = []
    for line in section.split("\n"):
        quoted = bool(_QUOTED.match(line))
        if not line.strip():
            if blocks:
                blocks[-1][1].append("")
            continue
        if blocks and blocks[-1][0] == quoted:
            blocks[-1][1].append(line)
        else:
            blocks.append((quoted, [line]))
    kept: list[str] = []
    for index, (quoted, lines) in enumerate(blocks):
        if quoted and not any(not q for q, _ in blocks[index + 1 :]):
            break
        text = "\n".join(lines).strip()
        if text:
            kept.append(text)
    return "\n\n".join(kept)


def _has_inline_answers(section: str) -> bool:
    lines = [line for line in section.split("\n") if line.strip()]
    quoted = [line for line in lines if _QUOTED.match(line)]
    return bool(quoted) and len(quoted) < len(lines)


def extract_answer(text: str) -> str:
    """The new text of a reply: the quoted original, headers and signature removed."""
    replies = _replies(_tidy(text))
    if not replies:
        return ""
    top = replies[0]
    answer = _cut_closing(_tidy(top.body)) if top.headers == "" else ""
    following = next((r for r in replies if r.headers), None)
    if following is not None and _has_inline_answers(following.body):
        # Answered between the quoted lines (bottom or inline posting).
        inline = _cut_closing(_inline_answers(_tidy(following.body)))
        answer = f"{answer}\n\n{inline}".strip() if answer else inline
    elif not answer and top.headers == "":
        answer = _tidy(top.full_body)
    # Quoted lines left at the end (a client that quotes without a header line).
    lines = answer.split("\n")
    while lines and (not lines[-1].strip() or _QUOTED.match(lines[-1])):
        lines.pop()
    answer = "\n".join(lines).strip()
    if len(answer) > MAX_ANSWER:
        answer = answer[: MAX_ANSWER - 1].rstrip() + "…"
    return answer
