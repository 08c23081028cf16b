"""The "Sessions" page: where a user sees the browsers signed in to their account and ends any of
them (ADR 0120). Operators and tenant users alike; only their own sessions, in their own realm."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import FastAPI, Request
from fastapi.responses import Response

from plexica.identity.names import OPERATOR_REALM
from plexica.web.session import WebSession
from plexica.web.shell import Shell, console_nav, notice_redirect, sign_out, tenant_nav
from plexica.web.store import agent_summary


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def sessions_routes(app: FastAPI, shell: Shell) -> None:

    async def nav_of(session: WebSession) -> list[dict[str, Any]]:
        if session.realm == OPERATOR_REALM:
            return console_nav()
        nav, _ = await tenant_nav(shell, session)
        return nav

    @app.get("/sessions", include_in_schema=False)
    async def sessions_page(request: Request) -> Response:
        async def show(request: Request, session: WebSession) -> Response:
            rows = await shell.sessions.of_user(session.realm, session.subject)
            listed = [
                {
                    "id": str(r.id), "device": agent_summary(r.user_agent), "ip": r.ip,
                    "created": _when(r.created_at), "last_seen": _when(r.last_seen_at),
                    "current": r.id == session.id,
                }
                for r in rows
            ]  # fmt: skip
            listed.sort(key=lambda s: not s["current"])
            return shell.page(
                request, session, "sessions.html", title="Sessions", nav=await nav_of(session),
                sessions=listed, notice=request.query_params.get("notice"),
            )  # fmt: skip

        return await shell.run(request, show, operator=None)

    @app.post("/sessions/{session_id}/end", include_in_schema=False)
    async def end_session(request: Request, session_id: str) -> Response:
        async def end(request: Request, session: WebSession) -> Response:
            try:
                chosen = UUID(session_id)
            except ValueError:
                chosen = None
            if chosen is not None and chosen == session.id:
                return await sign_out(shell, request, session)
            # Realm and subject are the signed-in user's: nobody ends another user's session here.
            ended = 0
            if chosen is not None:
                ended = await shell.end_sessions(session.realm, session.subject, chosen)
            notice = "The session was ended." if ended else "That session had already ended."
            return notice_redirect("/sessions", notice)

        return await shell.run(request, end, operator=None)
