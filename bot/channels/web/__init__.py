"""The web chat channel: a page (/chat), a one-line embed (widget.js), JSON posts and SSE.

`render` is pure (replies -> JSON messages, links from known URLs only); `transcript` keeps
what the page shows in SQLite; `limits` guards against floods; `server` is the Starlette
application; `serve` runs it with uvicorn inside the bot's event loop.
"""
