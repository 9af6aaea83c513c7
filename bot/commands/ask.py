"""`clusterbot ask`: one FAQ look-up, or one per stdin line with `ask -`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from bot.commands.common import UserError, add_config_option, fail, settings_from_args

if TYPE_CHECKING:
    from bot.knowledge import Answer, KnowledgeBase

MAX_QUESTION_CHARS = 10_000


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `ask`."""
    parser = subparsers.add_parser(
        "ask",
        help="answer one question from the FAQ (or one per line with '-')",
        description=(
            "Look a message up in the FAQ and print the reply: up to 3 answers, one per "
            "question in the message. With '-', read one message per line from standard input "
            "and answer each. topic is null when the bot would offer to forward the question "
            "to the secretariat (faq_id then names the matched 'not confirmed' entry, if any)."
        ),
    )
    parser.add_argument("question", metavar="QUESTION", help="the question, or '-' for stdin")
    parser.add_argument(
        "--lang",
        choices=("it", "en"),
        help="answer in this language (default: the question's language)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help=(
            'print {"faq_id", "score", "lang", "answer", "topic", "answers", "reply"} as JSON '
            "(one object per line)"
        ),
    )
    add_config_option(parser)
    parser.set_defaults(func=run)


def _load(args: argparse.Namespace) -> KnowledgeBase:
    from bot.knowledge import KnowledgeBase, KnowledgeError

    settings = settings_from_args(args)
    try:
        return KnowledgeBase.from_settings(settings)
    except KnowledgeError as exc:
        raise UserError("\n".join(exc.problems)) from None


def record(answer: Answer) -> dict[str, object]:
    """The JSON form of a reply: the primary answer's fields, every answer, the whole reply."""
    answers = [
        {"faq_id": found.faq_id, "topic": found.topic, "answer": found.text}
        for found in answer.answers
    ]
    return {
        "faq_id": answer.faq_id,
        "score": answer.score,
        "lang": answer.lang,
        # The primary answer alone (equal to answers[0]); on a fallback, the whole reply.
        "answer": answers[0]["answer"] if answers else answer.text,
        "topic": answer.topic,
        "answers": answers,
        "reply": answer.text,
    }


def _emit(answer: Answer, as_json: bool) -> None:
    if as_json:
        print(json.dumps(record(answer), ensure_ascii=False), flush=True)
    else:
        print(answer.text)


def run(args: argparse.Namespace) -> int:
    """Answer the question(s) and print the result."""
    try:
        kb = _load(args)
    except UserError as exc:
        return fail(str(exc))
    if args.question != "-":
        question = args.question.strip()
        if not question:
            return fail("the question is empty; write it in quotes, e.g. clusterbot ask 'budget?'")
        _emit(kb.answer(question[:MAX_QUESTION_CHARS], args.lang), args.json)
        return 0
    # Undecodable bytes must not abort a batch: replace them and keep going.
    stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    for line in stdin:
        question = line.strip()
        if not question:
            continue
        answer = kb.answer(question[:MAX_QUESTION_CHARS], args.lang)
        if args.json:
            _emit(answer, True)
        else:
            print(f"> {question}\n{answer.text}\n", flush=True)
    return 0
