"""What each step of the enquiry form asks: its text, menu and title, and its typed words.

Pure rendering from the turn's language and draft; moving through the form is in `enquiry`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bot.dialogue.flows import privacy
from bot.dialogue.smalltalk import fold
from bot.dialogue.texts import LANGUAGES
from bot.dialogue.turn import NO, YES, Button, Reply, Turn
from bot.enquiries import countries
from bot.enquiries.fields import FIELDS

SEND_WORDS = frozenset({"send", "invia", "confirm", "conferma", "yes", "si", "ok"})
EDIT_WORDS = frozenset({"edit", "modifica", "change", "change something", "cambia"})
BACK_WORDS = frozenset({"back", "indietro"})
SUMMARY_WORDS = frozenset({"back", "indietro", "summary", "riepilogo", "torna", "go back"})
DISCARD_WORDS = frozenset({"discard", "scarta", "scartala", "elimina", "delete"})


def no_words(turn: Turn) -> Mapping[str, str]:
    """A step whose options are chosen by their labels only."""
    return {}


def ask_field(name: str) -> Callable[[Turn], Reply]:
    """The question of a plain field: its text only."""
    return lambda turn: Reply(turn.t(f"ask_{name}"))


def ask_email(turn: Turn) -> Reply:
    """The e-mail question, or "did you mean …?" when the address typed looks mistyped."""
    suggestion = turn.state.get("email_hint")
    email = turn.draft.get("email", "")
    if not isinstance(suggestion, str) or not email:
        return Reply(turn.t("ask_email"))
    return Reply(
        turn.t("email_typo", suggestion=suggestion, email=email),
        (
            Button("mail:fix", turn.t("btn_email_fix", suggestion=suggestion)),
            Button("mail:keep", turn.t("btn_email_keep", email=email)),
        ),
    )


def email_words(turn: Turn) -> Mapping[str, str]:
    """Yes / no to "did you mean …?"."""
    return {**dict.fromkeys(YES, "mail:fix"), **dict.fromkeys(NO, "mail:keep")}


def country_menu(turn: Turn, everything: bool = False) -> list[Button]:
    """The common countries (or all listed ones), "more" and "other"."""
    if everything:
        chosen = list(countries.listed())
    else:
        chosen = [c for code in countries.COMMON if (c := countries.by_code(code))]
    buttons = [Button(f"c:{c.code}", c.label(turn.lang)) for c in chosen]
    if not everything:
        buttons.append(Button("c:more", turn.t("btn_country_more")))
    buttons.append(Button(f"c:{countries.OTHER_CODE}", turn.t("btn_country_other")))
    return buttons


def ask_country(turn: Turn) -> Reply:
    """Which country, with the short menu."""
    return Reply(turn.t("ask_country"), tuple(country_menu(turn)))


def ask_country_name(turn: Turn) -> Reply:
    """After "Outside the list": which country, by name."""
    return Reply(turn.t("ask_country_name"))


def ask_declined(turn: Turn) -> Reply:
    """After declining consent: back to the summary, or discard the form."""
    buttons = (
        Button("declined:back", turn.t("btn_back_to_summary")),
        Button("declined:discard", turn.t("btn_discard")),
    )
    return Reply(turn.t("declined_choose"), buttons)


def declined_words(turn: Turn) -> Mapping[str, str]:
    """Typed back / discard."""
    return {
        **dict.fromkeys(SUMMARY_WORDS, "declined:back"),
        **dict.fromkeys(DISCARD_WORDS, "declined:discard"),
    }


def consent_menu(turn: Turn) -> tuple[Button, ...]:
    """Accept / decline."""
    return (
        Button("consent:yes", turn.t("btn_accept")),
        Button("consent:no", turn.t("btn_decline")),
    )


def ask_consent(turn: Turn) -> Reply:
    """The privacy notice and the consent question."""
    text = privacy.notice(turn) + "\n\n" + turn.t("consent_ask")
    return Reply(text, consent_menu(turn), title=turn.t("privacy_title"))


def ask_confirm(turn: Turn) -> Reply:
    """The summary of the draft with send / edit / cancel."""
    draft = turn.draft
    country = draft.get("country", "")
    found = countries.find_country(country) if country else None
    summary = turn.t(
        "summary",
        name=draft.get("name", ""),
        email=draft.get("email", ""),
        organisation=draft.get("organisation", ""),
        country=found.label(turn.lang) if found else country,
        question=draft.get("question", ""),
    )
    buttons = (
        Button("send", turn.t("btn_confirm")),
        Button("edit", turn.t("btn_edit")),
        Button("cancel", turn.t("btn_cancel")),
    )
    return Reply(summary, buttons, title=turn.t("summary_title"))


def ask_edit(turn: Turn) -> Reply:
    """Which field to change, or back to the summary."""
    buttons = [Button(f"edit:{name}", turn.t(f"field_{name}")) for name in FIELDS]
    buttons.append(Button("back", turn.t("btn_back")))
    return Reply(turn.t("edit_choose"), tuple(buttons))


def consent_words(turn: Turn) -> Mapping[str, str]:
    """Typed yes / no."""
    return {**dict.fromkeys(NO, "consent:no"), **dict.fromkeys(YES, "consent:yes")}


def confirm_words(turn: Turn) -> Mapping[str, str]:
    """Typed send / edit."""
    return {**dict.fromkeys(EDIT_WORDS, "edit"), **dict.fromkeys(SEND_WORDS, "send")}


def edit_words(turn: Turn) -> Mapping[str, str]:
    """A field typed by its name or label in any language; back."""
    words = dict.fromkeys(BACK_WORDS, "back")
    for name in FIELDS:
        words[name] = f"edit:{name}"
        for lang in LANGUAGES:
            words[fold(turn.services.texts.get(lang, f"field_{name}"))] = f"edit:{name}"
    return words


def consent_nudge(turn: Turn) -> None:
    """Unclear text at consent: a short nudge with the buttons, not the whole notice again."""
    accept, decline = turn.t("btn_accept"), turn.t("btn_decline")
    turn.say(turn.t("consent_choose", accept=accept, decline=decline), *consent_menu(turn))
