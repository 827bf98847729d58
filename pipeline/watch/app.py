"""The watch page's HTTP side (Starlette): the static page, a conversation's JSON, and the
Server-Sent Events that keep the page live.

With `--corrections`, `POST /api/corrections` writes corrections (`pipeline.watch.corrections`):
a named token, the custom write header, a JSON body and this page's own origin, or 403 and
nothing written.

`GET /events` sends a `sync` event first (the conversations changed since the `Last-Event-ID`
header, or the `last` query parameter of a page that had to open a new connection; all of them
without one) and then an `update` per batch of entries read. Every event's id is the board's
cursor, the highest Redis entry id applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pipeline.core.labels import LABEL_SETS
from pipeline.watch.board import parse_entry_id, summary
from pipeline.watch.config import WatchConfig
from pipeline.watch.corrections import MAX_BODY, CorrectionWriter, Refused, parse_request
from pipeline.watch.feed import Change, Feed
from pipeline.watch.first_paint import render_page
from pipeline.watch.negative import NEGATIVE_LABELS
from pipeline.watch.security import WHO, Guard, load_tokens, write_refusal

STATIC = Path(__file__).parent / "static"
TEMPLATE = (STATIC / "index.html").read_text(encoding="utf-8")
ALL_LABELS = list(dict.fromkeys(label for s in LABEL_SETS.values() for label in s.labels))
KEEPALIVE_S = 15.0
RETRY_MS = 1000
FIRST_PAINT_ROWS = 200  # the riskiest rows put in the page itself; the script brings the rest at once


def create_app(config: WatchConfig) -> Guard:
    """The ASGI app: routes behind the `Guard`; its lifespan loads the board and follows the streams."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        import redis.asyncio

        client = redis.asyncio.from_url(config.redis_url, health_check_interval=30)
        feed = Feed(config, client)
        await feed.load()
        follow = asyncio.create_task(feed.run(), name="watch-feed")
        app.state.feed = feed
        app.state.writer = CorrectionWriter(config, client, feed.board)
        try:
            yield
        finally:
            feed.close()
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
            await client.aclose()

    async def index(request: Request) -> Response:
        feed: Feed = request.app.state.feed
        riskiest = feed.board.shown()[:FIRST_PAINT_ROWS]
        page = render_page(TEMPLATE, (summary(c) for c in riskiest), ALL_LABELS)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def meta(request: Request) -> Response:
        labels = ALL_LABELS
        negative = sorted({label for labels_ in NEGATIVE_LABELS.values() for label in labels_})
        return JSONResponse({"labels": labels, "negative": negative, "window_min": config.window_min,
                             "show_text": config.show_text, "corrections": config.corrections,
                             "label_sets": {name: list(s.labels) for name, s in LABEL_SETS.items()}})

    async def corrections(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        refusal = write_refusal(request.scope, headers)
        if refusal is not None:
            return JSONResponse({"error": refusal}, 403)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": f"the body is over {MAX_BODY} bytes"}, 413)
        try:
            requested = parse_request(json.loads(body))
            ids = await request.app.state.writer.write(requested, request.scope[WHO])
        except json.JSONDecodeError:
            return JSONResponse({"error": "the body is not JSON"}, 400)
        except Refused as e:
            return JSONResponse({"error": e.reason}, e.status)
        return JSONResponse({"written": len(ids), "ids": ids, "who": request.scope[WHO]})

    async def conversation(request: Request) -> Response:
        found = await request.app.state.feed.detail(request.query_params.get("id", ""))
        return JSONResponse(found) if found is not None else JSONResponse({"error": "not on the board"}, 404)

    async def events(request: Request) -> Response:
        feed: Feed = request.app.state.feed
        since = parse_entry_id(request.headers.get("last-event-id") or request.query_params.get("last") or "")
        first, queue = feed.subscribe(since)

        async def stream():
            try:
                yield _frame(first)
                while True:
                    try:
                        change = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"  # also finds pages that left without closing
                        continue
                    if change is None:
                        return
                    yield _frame(change)
            finally:
                feed.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})

    routes = [
        Route("/", index), Route("/api/meta", meta), Route("/api/conversation", conversation),
        Route("/events", events), Mount("/static", StaticFiles(directory=STATIC)),
    ]
    if config.corrections:  # otherwise the page is read-only: no route writes
        routes.insert(3, Route("/api/corrections", corrections, methods=["POST"]))
    app = Starlette(routes=routes, lifespan=lifespan)
    return Guard(app, config.token, load_tokens(config.tokens_file) if config.tokens_file else None)


def close_streams(app: Guard) -> None:
    """End the pages' event streams, so a stopping server need not wait for them."""
    feed = getattr(app.app.state, "feed", None)
    if feed is not None:
        feed.close()


def _frame(change: Change) -> str:
    return f"retry: {RETRY_MS}\nid: {change.cursor}\nevent: {change.kind}\ndata: {change.data}\n\n"
