"""The web chat channel: a page (/chat), a one-line embed (widget.js), JSON posts and SSE.

`render` is pure (replies -> JSON messages, links from known URLs only); `transcript` keeps
what the page shows in SQLite; `conversation` runs a post through the engine; `guards`
(origin, size, shape) and `limits` (floods) refuse bad requests; the routes are `pages`,
`chat_api`, `events` (SSE), `health` and `telegram_hook`; `server` assembles them into the
Starlette application; `serve` runs it with uvicorn inside the bot's event loop.
"""
