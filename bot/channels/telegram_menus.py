"""The bot's command menus: applicants' commands in it and en, admin commands for the staff."""

from __future__ import annotations

import asyncio
import logging

from telegram import Bot, BotCommand, BotCommandScopeChat
from telegram.error import TelegramError

from bot.channels.telegram_admin import ADMIN_COMMANDS
from bot.channels.telegram_render import ChannelTexts
from bot.dialogue.engine import COMMANDS as ENGINE_COMMANDS
from bot.settings import Settings

log = logging.getLogger(__name__)

# The applicants' commands are the engine's: one list, so the menu never drifts from it.
USER_COMMANDS = ENGINE_COMMANDS


class CommandMenus:
    """setMyCommands for every language and scope."""

    def __init__(self, settings: Settings, bot: Bot, texts: ChannelTexts) -> None:
        self.settings = settings
        self.bot = bot
        self.texts = texts

    async def set(self) -> None:
        """The command menus: it, en and the default; admin commands for the secretariat."""
        bot = self.bot
        try:
            for lang in ("it", "en", None):
                menu = self.texts.menu(lang or self.settings.language, "commands")
                commands = [BotCommand(name, menu[name]) for name in USER_COMMANDS]
                await bot.set_my_commands(commands, language_code=lang)
            admin_lang = self.settings.secretariat.language
            admin_menu = self.texts.menu(admin_lang, "admin_commands")
            admin = [BotCommand(name, admin_menu[name]) for name in ADMIN_COMMANDS]
            if self.settings.telegram.admin_chat_id:
                await bot.set_my_commands(
                    admin, scope=BotCommandScopeChat(self.settings.telegram.admin_chat_id)
                )
        except TelegramError as exc:
            log.warning("could not set the command menu: %s", type(exc).__name__)
            return
        user_menu = self.texts.menu(admin_lang, "commands")
        for user_id in self.settings.telegram.admin_user_ids:
            # An admin's private chat shows both menus; it fails until they started the bot.
            try:
                await bot.set_my_commands(
                    [BotCommand(n, user_menu[n]) for n in USER_COMMANDS] + admin,
                    scope=BotCommandScopeChat(user_id),
                )
            except TelegramError as exc:
                log.info("admin menu for one admin not set: %s", type(exc).__name__)

    async def set_in_background(self) -> None:
        """set(), never raising: the menus are cosmetic."""
        try:
            await self.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not set the command menu: %s", type(exc).__name__)
