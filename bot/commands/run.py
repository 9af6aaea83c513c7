"""`clusterbot run`: the Telegram bot, the scheduler and the outbox worker, until a signal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

from bot import instance
from bot.commands.common import UserError, add_config_option, fail, settings_from_args

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The database file was deleted or replaced under the running bot.
EXIT_DATABASE_LOST = 3


def add_parser(subparsers: Any) -> None:
    """Add the `run` sub-command."""
    parser = subparsers.add_parser(
        "run",
        help="run the Telegram bot (long polling, or a webhook when configured) and the web chat",
        description=(
            "Run the Telegram bot with the scheduler and the outbox worker. The token comes "
            "from $TELEGRAM_BOT_TOKEN or telegram.token; telegram.webhook_url switches from "
            "long polling to a webhook. With [web] enabled it also serves the web chat (/chat, "
            "/widget.js, /healthz) on web.listen:web.port. Stops cleanly on SIGINT or SIGTERM."
        ),
    )
    add_config_option(parser)
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging detail (default: INFO)",
    )
    parser.add_argument(
        "--new-database",
        action="store_true",
        help=(
            "start with a new, empty database although this data folder shows the bot ran "
            "here before (its database is missing: restore the backup instead if you have one)"
        ),
    )
    parser.set_defaults(func=run)


def _quiet_libraries() -> None:
    # httpx logs every request URL at INFO, and the URL contains the bot token; PTB logs
    # request parameters (people's messages) at DEBUG. Neither belongs in our logs.
    for name in ("httpx", "httpcore", "telegram", "apscheduler"):
        logging.getLogger(name).setLevel(logging.WARNING)


async def serve(settings: Any, *, new_database: bool = False) -> int:
    """Run the app and the Telegram channel until SIGINT/SIGTERM; returns the exit code.

    Holds the data directory's lock throughout: a second `run` refuses to start.
    """
    log = logging.getLogger("bot.run")
    # Once the lock names our PID, other commands wake us with WAKE_SIGNAL, whose default
    # action kills: catch it before the lock is taken, and remember a wake that comes before
    # the delivery worker exists (the worker is kicked once it does).
    wake = _Wake()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(instance.WAKE_SIGNAL, wake)
    try:
        try:
            lock = instance.acquire(settings)
        except instance.InstanceLocked as exc:
            return fail(str(exc))
        with lock:
            problem = instance.database_missing(settings, new_database=new_database)
            if problem is not None:
                return fail(problem)
            return await _serve_locked(settings, log, wake, new_database)
    finally:
        loop.remove_signal_handler(instance.WAKE_SIGNAL)
        # Until the process is gone a late wake is harmless, never fatal.
        signal.signal(instance.WAKE_SIGNAL, signal.SIG_IGN)


class _Wake:
    """The wake signal's handler: kicks the delivery worker, or remembers the wake."""

    def __init__(self) -> None:
        self.target: Any = None
        self.pending = False

    def __call__(self) -> None:
        if self.target is None:
            self.pending = True
        else:
            self.target()

    def attach(self, kick: Any) -> None:
        """From now on wake `kick`; a wake that came earlier kicks it at once."""
        self.target = kick
        if self.pending:
            self.pending = False
            kick()

    def detach(self) -> None:
        """The worker is stopping: later wakes are remembered, and forgotten."""
        self.target = None


async def _serve_locked(settings: Any, log: logging.Logger, wake: _Wake, new_database: bool) -> int:
    from telegram.error import TelegramError

    from bot.app import App
    from bot.channels.telegram import TelegramChannel, TelegramSetupError, describe

    web_socket = _bind_web(settings)
    async with App(settings, report=lambda text: log.info("%s", text), deliver=True) as app:
        assert app.db is not None
        if new_database and instance.continue_counter(settings, app.db):
            log.info("new database: references continue from the data folder's marker")
        instance.record_started(settings, app.db)
        try:
            channel = TelegramChannel(settings, app)
        except TelegramSetupError as exc:
            if web_socket is not None:
                web_socket.close()
            return fail(str(exc))
        web_stop = asyncio.Event()
        web_task = _start_web(settings, app, web_socket, web_stop, log, channel)

        def stop() -> None:
            channel.stop()
            web_stop.set()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        # Commands run meanwhile (chat, digest --send) queue and wake us with this signal.
        wake.attach(app.kick)
        app.add_stop_listener(channel.stop)
        log.info("%s", describe(settings))
        try:
            await channel.run(ready=lambda: log.info("bot running; Ctrl-C stops it"))
        except TelegramSetupError as exc:
            return fail(str(exc))
        except TelegramError as exc:
            # Telegram kept refusing a start-up request beyond the retries: one clear line.
            detail = exc.message.splitlines()[0] if exc.message else type(exc).__name__
            return fail(f"Telegram refused a start-up request: {detail}")
        finally:
            web_stop.set()
            if web_task is not None:
                await asyncio.gather(web_task, return_exceptions=True)
            wake.detach()
            with contextlib.suppress(Exception):  # a lost database: the marker keeps its count
                instance.record_started(settings, app.db)
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        if app.fatal is not None:
            # Already logged in one line; a distinct code so systemd does not restart it
            # onto a fresh, empty database (RestartPreventExitStatus= in the unit).
            return EXIT_DATABASE_LOST
        log.info("stopped")
    return 0


def _bind_web(settings: Any) -> Any:
    """The web chat's listening socket when [web] is enabled (a busy port is a user error)."""
    if not settings.web.enabled:
        return None
    from bot.channels.web.serve import bind

    web = settings.web
    try:
        return bind(web.listen, web.port)
    except OSError as exc:
        raise UserError(
            f"web: cannot listen on {web.listen}:{web.port} ({exc.strerror or exc}); "
            "choose another web.port or stop the program using it"
        ) from None


def _start_web(
    settings: Any, app: Any, sock: Any, stop: asyncio.Event, log: logging.Logger, telegram: Any
) -> asyncio.Task[None] | None:
    """Serve the web chat beside Telegram, in the same loop, sharing the app; in webhook
    mode the same server takes Telegram's updates (one port, one /healthz)."""
    if sock is None:
        return None
    from bot.channels.web.serve import serve_web
    from bot.channels.web.server import WebChannel, last_telegram_update

    assert app.db is not None
    db = app.db
    channel = WebChannel(settings, app, last_telegram_contact=lambda: last_telegram_update(db))
    if settings.telegram.webhook_url:
        telegram.webhook.serve_with(channel.mount_webhook)
    return asyncio.create_task(
        serve_web(
            channel, stop, sock=sock, ready=lambda base: log.info("web chat on %s/chat", base)
        ),
        name="web-chat",
    )


def run(args: argparse.Namespace) -> int:
    """Start the bot; exit 1 with one line for a setting or token problem."""
    from bot.knowledge.errors import KnowledgeError
    from bot.logs import setup_logging
    from bot.settings.run_problems import run_problems
    from bot.storage import StorageError

    setup_logging(getattr(args, "log_level", "INFO"), LOG_FORMAT)
    _quiet_libraries()
    try:
        settings = settings_from_args(args)
        # Checked before anything starts, and without importing telegram: what `check`
        # reports too (token format, a private admin chat, mail that would never leave).
        problems = run_problems(settings)
        if problems:
            raise UserError("\n".join(problems))
        # Opt in to PTB's future durations (timedelta): our code reads both, and PTB
        # otherwise warns on every 429.
        os.environ.setdefault("PTB_TIMEDELTA", "true")
        return asyncio.run(serve(settings, new_database=getattr(args, "new_database", False)))
    except UserError as exc:
        return fail(str(exc))
    except KnowledgeError as exc:
        return fail("\n".join(exc.problems))
    except StorageError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot start the bot: {exc}")
    except KeyboardInterrupt:
        print("clusterbot: interrupted", file=sys.stderr)
        return 130
