"""[limits] and [faq]: how many messages a user may send, and when a FAQ answer counts."""

from __future__ import annotations

from pydantic import Field

from bot.settings.section import Section


class LimitSettings(Section):
    messages_per_minute: int = Field(default=20, ge=1, le=10000)


class FaqSettings(Section):
    min_score: float = Field(default=0.5, ge=0.0, le=1.0)
    # Keep the built ranking index under data_dir/cache, so a start reads it instead of
    # building it again (bot/knowledge/index_cache.py).
    index_cache: bool = True
