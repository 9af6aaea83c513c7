"""FAQ answers: free text matched against the knowledge base, topic buttons, small talk."""

from __future__ import annotations

from typing import Any

from bot.dialogue.session import MATCH_CHARS, record_turn
from bot.dialogue.smalltalk import fold, small_talk
from bot.dialogue.standing import call_standing
from bot.dialogue.turn import MAX_BUTTON_ID_BYTES, Button, Turn, typed_number
from bot.enquiries.fields import LIMITS, FieldError, validate_field

# FAQ topics left out of the topic menu: `contact` would sit next to the form's own button
# ("Write to the secretariat"); its answer is still found by free text and /start contact.
MENU_HIDDEN = frozenset({"contact"})


def topic_buttons(turn: Turn) -> list[Button]:
    """One button per FAQ topic, then the button that opens the form."""
    buttons = [
        Button(f"faq:{faq_id}", label)
        for faq_id, label in turn.services.kb.topics(turn.lang)
        if faq_id not in MENU_HIDDEN and len(f"faq:{faq_id}".encode()) <= MAX_BUTTON_ID_BYTES
    ]
    buttons.append(Button("contact", turn.t("btn_contact")))
    return buttons


def show_topics(turn: Turn) -> None:
    """The topic menu (/faq, the "topics" button): a side trip."""
    turn.say(turn.t("faq_menu"), *topic_buttons(turn))
    turn.side_trip = True


def answer_topic(turn: Turn, faq_id: str) -> None:
    """The answer of one topic (a topic button, /start <faq-id>): a side trip."""
    kb = turn.services.kb
    title = kb.title(faq_id, turn.lang)
    text = kb.render(faq_id, turn.lang, turn.now)
    turn.say(
        text,
        Button("topics", turn.t("btn_topics")),
        Button("contact", turn.t("btn_contact")),
        title=title,
    )
    # A topic chosen from the menu is asked too: the transcript shows it by its label.
    record_turn(turn.state, turn.now, title or faq_id, text, faq_id)
    turn.side_trip = True


def press(turn: Turn, button_id: str) -> bool:
    """A topic button or the topics menu button; False if `button_id` is neither."""
    kind, _, value = button_id.partition(":")
    if kind == "faq" and value in turn.services.kb.by_id:
        answer_topic(turn, value)
        return True
    if button_id == "topics":
        show_topics(turn)
        return True
    return False


def free_text(turn: Turn, text: str) -> None:
    """Text outside the form: small talk, an answer from the FAQ, or an offer to forward it."""
    question = text.strip()
    topics = Button("topics", turn.t("btn_topics"))
    if not fold(question[:200]):
        turn.say(turn.t("empty"), topics)
        return
    number = typed_number(turn.event)
    if number is not None:
        # A menu number from an earlier message: not a question to look up or to forward.
        turn.say(turn.t("no_option", n=number), *topic_buttons(turn))
        return
    chat = small_talk(question)
    if chat.kind is not None:
        # Courtesy is not a question: no FAQ look-up, nothing for the enquiry's history.
        if chat.kind == "greeting":
            turn.say(turn.t("greeting", standing=call_standing(turn)), topics)
        elif chat.kind == "how_are_you":
            turn.say(turn.t("greeting_how"), topics)
        elif chat.kind == "thanks":
            turn.say(turn.t("thanks"))
        else:
            turn.say(turn.t("farewell"))
        return
    # "Ciao, qual è il budget?": the question wins, matched without its greeting.
    kb = turn.services.kb
    found = kb.understand(chat.rest[:MATCH_CHARS], lang=turn.lang, now=turn.now)
    primary = found.answers[0] if found.answers else None
    turn.faq_log.append(
        (
            turn.lang,
            primary.faq_id if primary else None,
            float(primary.score if primary else found.score),
        )
    )
    answered = "\n\n".join(item.text for item in found.answers) or None
    record_turn(turn.state, turn.now, question, answered, primary.faq_id if primary else None)
    contact = Button("contact", turn.t("btn_contact"))
    # One reply per answered question (each with its title and source); the buttons go
    # under the last reply of the turn.
    for number, item in enumerate(found.answers, 1):
        last = number == len(found.answers) and found.unanswered is None
        turn.say(
            item.text, *((topics, contact) if last else ()), title=kb.title(item.faq_id, turn.lang)
        )
    if found.unanswered is None:
        turn.state.pop("pending", None)
        return
    # Only what was not answered goes to the form.
    pending = found.unanswered if found.answers else question
    too_long = _too_long(pending)
    if too_long is not None:
        # Too long to forward: say so now, rather than drop it silently in the form.
        turn.state.pop("pending", None)
        turn.say(turn.t("fallback_too_long", **too_long), topics)
        return
    turn.state["pending"] = pending
    # A point the facts leave open: what the call does say, then the offer to forward.
    parts = [item.text for item in found.unconfirmed]
    if parts:
        parts.append(turn.t("fallback_unconfirmed"))
    elif found.answers:
        parts.append(turn.t("fallback_part", question=pending))
    else:
        parts.append(turn.t("fallback") + "\n" + turn.t("fallback_retry"))
    turn.say("\n\n".join(parts), Button("fwd", turn.t("btn_forward")), topics)


def _too_long(question: str) -> dict[str, Any] | None:
    longest = LIMITS["question"][1]
    try:
        validate_field("question", question)
    except FieldError as exc:
        if exc.code == "too_long":
            return dict(exc.params)
        if len(question) > longest:
            return {"length": len(question), "max": longest}
    return None
