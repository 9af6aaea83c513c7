"""`clusterbot web`: the web chat page alone, on localhost by default, like `chat` in a browser."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from bot.commands.common import UserError, add_config_option, fail, settings_from_args

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_parser(subparsers: Any) -> None:
    """Add the `web` sub-command."""
    parser = subparsers.add_parser(
        "web",
        help="serve the web chat page (/chat) and the widget alone",
        description=(
            "Serve the web chat: the page /chat, the embeddable /widget.js, and /healthz, on "
            "web.listen and web.port (default http://127.0.0.1:8081/chat). With no settings, "
            "data goes to ./var/ and mail to ./var/mail/ as .eml files, like 'clusterbot "
            "chat'. Stops cleanly on SIGINT or SIGTERM."
        ),
    )
    add_config_option(parser)
    parser.add_argument(
        "--new-database",
        action="store_true",
        help=(
            "start with a new, empty database although this data folder shows the bot ran "
            "here before (its database is missing: restore the backup instead if you have one)"
        ),
    )
    parser.set_defaults(func=run)


async def serve(settings: Any, out: Any = None, *, new_database: bool = False) -> int:
    """Run the app and the web channel until SIGINT/SIGTERM."""
    from bot import instance
    from bot.app import App
    from bot.channels.web.serve import bind, serve_web
    from bot.channels.web.server import WebChannel

    say = out or (lambda text: print(text, flush=True))
    web = settings.web
    try:
        sock = bind(web.listen, web.port)
    except OSError as exc:
        raise UserError(
            f"cannot listen on {web.listen}:{web.port} ({exc.strerror or exc}); "
            "choose another web.port or stop the program using it"
        ) from None
    async with App(settings, report=say) as app:
        if new_database and app.db is not None:
            instance.continue_counter(settings, app.db)
        channel = WebChannel(settings, app)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await serve_web(
                channel,
                stop,
                sock=sock,
                ready=lambda base: say(f"web chat on {base}/chat (Ctrl-C stops it)"),
            )
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
    say("stopped")
    return 0


def run(args: argparse.Namespace) -> int:
    """Serve the web chat; exit 1 with one line for a settings or port problem."""
    from bot import instance
    from bot.knowledge.errors import KnowledgeError

    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    try:
        settings = settings_from_args(args)
        # Like `run`: an empty database in a used data folder would issue references again.
        problem = instance.database_missing(settings, new_database=args.new_database)
        if problem is not None:
            raise UserError(problem)
        return asyncio.run(serve(settings, new_database=args.new_database))
    except UserError as exc:
        return fail(str(exc))
    except KnowledgeError as exc:
        return fail("\n".join(exc.problems))
    except OSError as exc:
        return fail(f"cannot start the web chat: {exc}")
    except KeyboardInterrupt:
        print("clusterbot: interrupted", file=sys.stderr)
        return 130
