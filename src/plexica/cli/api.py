"""The CLI over the core's HTTP API with an operator token (ADR 0165).

Commands that the core's API serves (tenants, the plugin catalog and installations, flags,
dead letters and replays, service clients, a user's password reset) go
through it when the platform is reached by URL: a distributed deployment (``--url`` and
``PLEXICA_TOKEN``) or the running ``plexica up`` (signed in with the first operator's
credentials it wrote, the token kept in the data directory until it expires). With
``PLEXICA_DATABASE_URL`` and no token they stay on the database, as before.

Only the standard library at import time; ``httpx`` loads when a request is made.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from plexica.cli.common import EXIT_REFUSED, checked_url, fail, no_platform
from plexica.identity.names import CLI_CLIENT, CREDENTIALS_FILE, OPERATOR_REALM, issuer_url

if TYPE_CHECKING:
    import httpx

CACHE_FILE = "cli-token.json"
_MARGIN_S = 30.0
HOW_TO_SIGN_IN = (
    "get an operator token with `PLEXICA_PASSWORD=... plexica token --user <operator e-mail>"
    " --url {url}` and export it as PLEXICA_TOKEN"
)


@dataclass
class Api:
    """The core's API at ``base`` (``<public URL>/api/core``, or a core's own URL)."""

    url: str
    token: str
    data_dir: Path | None = None  # set when the token is the CLI's own, renewable one
    as_json: bool = False  # a refusal is also printed as JSON on stdout, for scripts
    forbidden: str | None = None  # what a 403 answer says, when not "not an operator's"
    _http: httpx.Client | None = field(default=None, repr=False)
    _base: str | None = None

    def client(self) -> httpx.Client:
        if self._http is None:
            import httpx

            self._http = httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0))
        return self._http

    def base(self) -> str:
        """``<url>/api/core`` behind the edge; the URL itself when it is a core's own."""
        if self._base is None:
            for candidate in (self.url + "/api/core", self.url):
                response = self._send("GET", candidate + "/v1/info", None, None, auth=False)
                if response.status_code == 200:
                    self._base = candidate
                    break
            else:
                raise fail(f"no Plexica platform answers at {self.url}: check --url")
        return self._base

    def _send(
        self,
        method: str,
        url: str,
        body: Any,
        params: dict[str, Any] | None,
        *,
        auth: bool = True,
    ) -> httpx.Response:
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        try:
            return self.client().request(method, url, json=body, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise fail(
                f"cannot reach {self.url} ({type(exc).__name__}): is the platform running?"
                " check --url"
            ) from None

    def call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        """The JSON answer of ``method path``; an error answer ends the command in one line."""
        url = self.base() + path
        response = self._send(method, url, body, params)
        if response.status_code == 401 and self.data_dir is not None:
            _forget(self.data_dir)
            self.token = _local_token(self.data_dir, self.url)
            response = self._send(method, url, body, params)
        if response.status_code == 401:
            raise fail(
                "the token was refused (expired or invalid): " + HOW_TO_SIGN_IN.format(url=self.url)
            )
        if response.status_code == 403:
            raise fail(
                self.forbidden
                or "the token is not an operator's: " + HOW_TO_SIGN_IN.format(url=self.url)
            )
        if response.status_code >= 400:
            if self.as_json:
                typer.echo(json.dumps({"error": _error_of(response)}))
                raise typer.Exit(EXIT_REFUSED)
            raise fail(_error_line(response), code=EXIT_REFUSED)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def tenant_id(self, slug: str) -> str:
        return str(self.call("GET", f"/v1/tenants/{slug}")["id"])


def _error_of(response: httpx.Response) -> dict[str, Any]:
    try:
        error = response.json()["error"]
        return {"code": str(error["code"]), "message": str(error["message"]), **error}
    except (ValueError, KeyError, TypeError):
        return {"code": f"http_{response.status_code}", "message": response.reason_phrase}


def _error_line(response: httpx.Response) -> str:
    error = _error_of(response)
    line = f"{error['message']} ({error['code']})"
    request_id = response.headers.get("x-request-id")
    return f"{line} [request {request_id}]" if request_id else line


def reach(data_dir: Path | None, url: str | None, *, as_json: bool = False) -> Api | None:
    """How a command reaches the platform: its API (an :class:`Api`), or ``None`` for the
    database (``PLEXICA_DATABASE_URL`` without a token, or an ``up`` without its credentials)."""
    from plexica.cli import runtime
    from plexica.kit.datadir import default_data_dir

    folder = data_dir or Path(os.environ.get("PLEXICA_DATA_DIR") or default_data_dir())
    folder = folder.expanduser()
    wanted = checked_url(url) if url else None
    token = os.environ.get("PLEXICA_TOKEN", "").strip()
    running = runtime.read(folder)
    running_url = str(running["url"]).rstrip("/") if running is not None else None
    if token:
        target = wanted or running_url or os.environ.get("PLEXICA_PUBLIC_URL")
        if not target:
            raise fail(no_platform(folder, None))
        return Api(checked_url(target), token, as_json=as_json)
    if os.environ.get("PLEXICA_DATABASE_URL"):
        return None
    if running_url is not None and wanted in (None, running_url):
        if not (folder / CREDENTIALS_FILE).exists():
            return None
        return Api(running_url, _local_token(folder, running_url), folder, as_json)
    if wanted is not None:
        raise fail(f"no operator token for {wanted}: " + HOW_TO_SIGN_IN.format(url=wanted))
    raise fail(no_platform(folder, None))


def reach_realm(
    data_dir: Path | None, url: str | None, tenant: str | None, *, as_json: bool = False
) -> Api | None:
    """The API acting in ``tenant``'s realm (``None``: the operator realm), or ``None`` for the
    database (ADR 0166). Over the API a command acts in its token's own realm: a tenant admin's
    token for a tenant, an operator's for the operator realm; any other token is refused in one
    line. Beside a local ``plexica up`` (the CLI's own operator token) a tenant's realm stays on
    the database, as before."""
    api = reach(data_dir, url, as_json=as_json)
    if api is None or api.data_dir is not None:
        return None if api is None or tenant is not None else api
    me = api.call("GET", "/v1/me")
    slug = me.get("tenant_slug") if isinstance(me, dict) else None
    if slug != tenant:
        has = f"tenant {slug}'s realm" if slug else "the operator realm"
        wanted = f"tenant {tenant}'s realm" if tenant else "the operator realm"
        use = f"that tenant's admin token (`plexica token --tenant {tenant} ...`)"
        raise fail(
            f"the token acts in {has}, not in {wanted}: use "
            + (use if tenant else "an operator token")
            + ", or PLEXICA_DATABASE_URL for the database (break-glass)"
        )
    if tenant is not None:
        api.forbidden = f"the token may not do this in tenant {tenant}: use its admin's token"
    return api


# --- the CLI's own token for the local `plexica up` -----------------------------------------


def _local_token(folder: Path, url: str) -> str:
    cached = _read(folder / CACHE_FILE)
    now = time.time()
    if cached.get("url") == url:
        if float(cached.get("expires", 0)) > now + _MARGIN_S:
            return str(cached["access_token"])
        if cached.get("refresh_token") and float(cached.get("refresh_expires", 0)) > now:
            answer = _refresh(url, str(cached["refresh_token"]))
            if answer is not None:
                return _keep(folder, url, answer)
    return _keep(folder, url, _sign_in(folder, url))


def _refresh(url: str, refresh_token: str) -> dict[str, Any] | None:
    import httpx

    endpoint = issuer_url(url, OPERATOR_REALM) + "/protocol/openid-connect/token"
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLI_CLIENT}
    try:
        response = httpx.post(endpoint, data=form, timeout=15.0)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _sign_in(folder: Path, url: str) -> dict[str, Any]:
    import asyncio

    import httpx

    from plexica.identity.client import LoginError, password_login

    credentials = _read(folder / CREDENTIALS_FILE)
    issuer = issuer_url(url, OPERATOR_REALM)

    async def login() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=15.0) as http:
            return await password_login(
                http, issuer, str(credentials.get("email")), str(credentials.get("password"))
            )

    try:
        return asyncio.run(login())
    except LoginError as exc:
        raise fail(
            f"the operator credentials in {folder / CREDENTIALS_FILE} were refused ({exc}):"
            " export PLEXICA_TOKEN, or PLEXICA_DATABASE_URL for the database"
        ) from None
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach {url} ({type(exc).__name__}): is the platform running?") from None


def _keep(folder: Path, url: str, answer: dict[str, Any]) -> str:
    now = time.time()
    record = {
        "url": url,
        "access_token": answer["access_token"],
        "expires": now + float(answer.get("expires_in", 60)),
        "refresh_token": answer.get("refresh_token"),
        "refresh_expires": now + float(answer.get("refresh_expires_in") or 0),
    }
    path = folder / CACHE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh)
    os.replace(tmp, path)
    return str(answer["access_token"])


def _forget(folder: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (folder / CACHE_FILE).unlink()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
