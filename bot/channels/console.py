"""The terminal channel: the dialogue engine on stdin/stdout, buttons as numbered choices."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from bot.dialogue.engine import Button, Engine, Event, Reply
from bot.settings import Settings

CHANNEL = "console"
QUIT_COMMANDS = frozenset({"quit", "exit"})
# How long, at exit, the console waits for mail it just queued to be handed over.
DRAIN_SECONDS = 10.0
# How long, after an enquiry is confirmed, the console waits for its mail before reading on:
# the app's "e-mail saved to ..." line then follows the confirmation instead of a later reply.
SETTLE_SECONDS = 5.0
_BOLD = "\033[1m"
_RESET = "\033[0m"


def default_user() -> str:
    """The console user's id: the login name, so a restart continues the same conversation."""
    try:
        return getpass.getuser() or "local"
    except (OSError, KeyError):
        return "local"


def parse_line(line: str, buttons: Sequence[Button]) -> tuple[str, str, str] | None:
    """Map one typed line to (kind, value, args): a button (number or label), a command or text.

    Returns None for /quit and /exit.
    """
    text = line.strip()
    if text.startswith("/") and len(text) > 1 and not text[1].isspace():
        name, _, args = text[1:].partition(" ")
        name = name.split("@", 1)[0]
        if name.lower() in QUIT_COMMANDS:
            return None
        return ("command", name, args.strip())
    if buttons:
        if text.isdigit() and 1 <= int(text) <= len(buttons):
            return ("button", buttons[int(text) - 1].id, "")
        folded = _label_key(text)
        for button in buttons:
            if folded and folded == _label_key(button.label):
                return ("button", button.id, "")
    return ("text", line.rstrip("\r\n"), "")


def _label_key(text: str) -> str:
    # "✉️ Write to the secretariat", "write to the secretariat" and "No, keep" / "no keep"
    # all name the same button.
    return " ".join("".join(c if c.isalnum() else " " for c in text.casefold()).split())


def render(replies: Sequence[Reply], bold: bool = False) -> tuple[str, list[Button]]:
    """The replies as terminal text, buttons numbered across all of them."""
    parts: list[str] = []
    buttons: list[Button] = []
    for reply in replies:
        lines: list[str] = []
        if reply.title:
            lines.append(f"{_BOLD}{reply.title}{_RESET}" if bold else f"*{reply.title}*")
        lines.append(_printable(reply.text))
        for button in reply.buttons:
            buttons.append(button)
            lines.append(f"  {len(buttons)}) {_printable(button.label)}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts), buttons


def _printable(text: str) -> str:
    # Escape sequences or carriage returns in echoed user text must not drive the terminal.
    return "".join(
        char
        if char in "\n\t" or (char.isprintable() or char == " ")
        else "\N{REPLACEMENT CHARACTER}"
        for char in text
    )


@dataclass
class _Output:
    """The terminal's output; knows whether a "> " prompt is waiting for the user."""

    stream: IO[str]
    interactive: bool = False
    prompting: bool = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:
            # The reader went away (e.g. `| head`): nothing more to say.
            pass

    def __call__(self, text: str = "") -> None:
        self._write(text + "\n")

    def prompt(self) -> None:
        """Show "> " when a person is typing; a pipe gets no prompts."""
        if self.interactive:
            self._write("> ")
            self.prompting = True

    def answered(self) -> None:
        """The user finished a line: the prompt is no longer on screen."""
        self.prompting = False

    def report(self, text: str) -> None:
        """A line from the app (e.g. "e-mail saved to ..."), at any moment, on its own line."""
        if self.prompting:
            # The prompt is showing: start a new line and show the prompt again below.
            self._write(f"\n{_printable(text)}\n> ")
        else:
            self(_printable(text))


def _reader(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None], stdin: IO[Any]
) -> None:
    # A daemon thread, so a blocked read never holds up the exit; the event loop stays free for
    # the scheduler and mail delivery while the user thinks.
    source = getattr(stdin, "buffer", stdin)
    try:
        while True:
            raw = source.readline()
            if not raw:
                break
            line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            loop.call_soon_threadsafe(queue.put_nowait, line)
    except (OSError, ValueError):
        pass
    finally:
        # RuntimeError: the loop already closed, the console has left.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, None)


async def converse(
    engine: Engine,
    *,
    user_id: str,
    lang: str | None = None,
    stdin: IO[Any] | None = None,
    stdout: IO[str] | None = None,
    output: _Output | None = None,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Talk to `engine` until end of input or /quit.

    `output` (default: a new one on `stdout`) is shared with the app's reports; `settle` is
    awaited after each reply is printed (e.g. to let just-queued mail go out first).
    """
    stdin = stdin if stdin is not None else sys.stdin
    out = output if output is not None else _Output(stdout if stdout is not None else sys.stdout)
    interactive = _isatty(stdin) and _isatty(out.stream)
    out.interactive = interactive
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=_reader, args=(loop, queue, stdin), daemon=True).start()

    def event(kind: str, **values: Any) -> Event:
        return Event(
            channel=CHANNEL,
            user_id=user_id,
            kind=kind,  # type: ignore[arg-type]
            chat_id=user_id,
            username=user_id,
            **values,
        )

    if lang is not None:
        # --lang is an explicit choice, like pressing a language button; its reply is not news.
        engine.handle(event("command", command="language", args=lang))
    if interactive:
        out("(type your question; numbers choose an option; /quit or Ctrl-D to leave)")
    text, buttons = render(engine.handle(event("command", command="start")), bold=interactive)
    out(text)
    # Answers the secretariat gave while the console was closed (e.g. /reply in Telegram).
    answers = pending_answers(engine, user_id)
    if answers:
        out("")
        out(render(answers, bold=interactive)[0])
    while True:
        out.prompt()
        line = await queue.get()
        out.answered()
        if line is None:
            break
        parsed = parse_line(line, buttons)
        if parsed is None:
            break
        kind, value, args = parsed
        if kind == "command":
            replies = engine.handle(event("command", command=value, args=args))
        elif kind == "button":
            replies = engine.handle(event("button", button_id=value))
        else:
            replies = engine.handle(event("text", text=value))
        text, buttons = render(replies + pending_answers(engine, user_id), bold=interactive)
        out("")
        out(text)
        if settle is not None:
            await settle()
        # Let the scheduler and delivery run between messages, even when input is a pipe.
        await asyncio.sleep(0)
    if interactive:
        out("")


def pending_answers(engine: Engine, user_id: str) -> list[Reply]:
    """The secretariat's answers queued for this console user, recorded delivered as shown.

    The console is a pull transport: it takes its deliveries when the user is there.
    """
    from datetime import timedelta

    from bot.deliveries import store
    from bot.deliveries.model import Sent
    from bot.deliveries.worker import new_owner
    from bot.enquiries import DeliveryRules, enquiry_by_id
    from bot.storage import transaction, utc_now

    db = engine.db
    owner = new_owner()
    now = utc_now()
    claimed = store.claim_for_recipient(
        db,
        owner=owner,
        now=now,
        transport=CHANNEL,
        recipient=user_id,
        lease=timedelta(minutes=1),
    )
    replies: list[Reply] = []
    rules = DeliveryRules(engine.settings)
    with transaction(db):
        for delivery in claimed:
            enquiry = enquiry_by_id(db, delivery.enquiry_id) if delivery.enquiry_id else None
            payload = delivery.payload
            text = payload.decode() if isinstance(payload, bytes) else str(payload or "")
            if delivery.kind in ("answer", "answer_notice"):
                lang = (enquiry or {}).get("lang") or "en"
                title = engine.texts.get(lang, "answer_relay", ref=(enquiry or {}).get("ref") or "")
                replies.append(Reply(text=text, title=title))
            elif text:
                replies.append(Reply(text=text))
            if store.record_sent(db, delivery, owner, now):
                rules.settled(db, delivery, Sent(), now)
    return replies


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


async def run_console(
    settings: Settings,
    *,
    lang: str | None = None,
    user_id: str | None = None,
    stdin: IO[Any] | None = None,
    stdout: IO[str] | None = None,
    new_database: bool = False,
) -> int:
    """Run the app (database, knowledge base, mail store, scheduler) and talk in the terminal.

    `new_database`: the data folder's database was lost and an empty one is wanted; its
    references continue from the folder's marker, as with `run --new-database`.
    """
    from bot import instance
    from bot.app import App

    out = _Output(stdout if stdout is not None else sys.stdout)
    async with App(settings, report=out.report) as app:
        assert app.db is not None
        if new_database:
            instance.continue_counter(settings, app.db)
        committed = False
        unsettled = False
        deliveries: set[asyncio.Future[Any]] = set()

        def on_commit() -> None:
            nonlocal committed, unsettled
            committed = unsettled = True
            app.kick()

        async def settle() -> None:
            # After a confirmation, wait (briefly) for its mail, so the report comes right
            # after the reply. A slow server is not cancelled: its report comes later.
            nonlocal unsettled
            if not unsettled:
                return
            unsettled = False
            delivery = asyncio.ensure_future(app.deliver())
            deliveries.add(delivery)
            delivery.add_done_callback(deliveries.discard)
            await asyncio.wait({delivery}, timeout=SETTLE_SECONDS)

        # One local user at a keyboard or a script: a long piped script must not be refused
        # as a flood. The daily enquiry limit still applies.
        engine = Engine(app.db, app.kb, settings, on_commit=on_commit, rate_limit=False)
        await converse(
            engine,
            user_id=user_id or default_user(),
            lang=lang,
            stdin=stdin,
            output=out,
            settle=settle,
        )
        if committed:
            # Mail queued by the last messages is handed over before the app stops.
            try:
                await asyncio.wait_for(app.deliver(), DRAIN_SECONDS)
            except TimeoutError:
                out("(mail not delivered yet: it stays queued and goes out on the next start)")
        leftover = [delivery for delivery in deliveries if not delivery.done()]
        for delivery in leftover:
            delivery.cancel()
        if leftover:
            await asyncio.gather(*leftover, return_exceptions=True)
    return 0


def environment_user() -> str:
    """CLUSTERBOT_USER if set (handy for tests and demos), else the login name."""
    return os.environ.get("CLUSTERBOT_USER") or default_user()
