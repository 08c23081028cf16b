"""The pages the built-in provider shows: the sign-in form (with its CSRF cookie), error pages
and the signed-out page, self-contained and never framed or cached."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from fastapi.responses import HTMLResponse

CSRF_COOKIE = "plexica_csrf"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Plexica</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem;
color:#111;background:#fff;line-height:1.5}}
label{{display:block;margin-top:1rem;font-weight:600}}
input{{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #555;
border-radius:4px}}
input:focus,button:focus{{outline:3px solid #1a56db;outline-offset:2px}}
button{{margin-top:1.5rem;width:100%;padding:.7rem;font-size:1rem;background:#1a3fa6;color:#fff;
border:0;border-radius:4px;cursor:pointer}}
.error{{color:#8b0000;background:#fdecea;padding:.6rem;border-radius:4px}}
</style></head>
<body><main>{body}</main></body></html>"""
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def error_page(message: str, status: int = 400, title: str = "Sign-in error") -> HTMLResponse:
    alert = f'<p class="error" role="alert">{escape(message)}</p>'
    return page(title, f"<h1>{escape(title)}</h1>{alert}", status)


def _hidden(params: dict[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in params.items()
    )


def login_form(
    realm: str,
    params: dict[str, str],
    csrf: str,
    *,
    email: str = "",
    error: str | None = None,
    status: int = 200,
    secure: bool = False,
    company: str | None = None,
) -> HTMLResponse:
    """``company``: the name of the tenant's company sign-in (ADR 0246), offered beside."""
    hidden = _hidden(params)
    alert = f'<p id="login-error" class="error" role="alert">{escape(error)}</p>' if error else ""
    described = ' aria-describedby="login-error" aria-invalid="true"' if error else ""
    body = f"""<h1>Sign in</h1>
<p>to <strong>{escape(realm)}</strong></p>
{alert}
<form method="post" action="" novalidate>
<input type="hidden" name="csrf" value="{escape(csrf)}">{hidden}
<label for="username">Email</label>
<input id="username" name="username" type="email" autocomplete="username" required
 value="{escape(email)}"{described}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password"
 required{described}>
<button type="submit">Sign in</button>{_company(company)}
</form>"""
    response = page("Sign in", body, status)
    response.set_cookie(
        CSRF_COOKIE, csrf, httponly=True, samesite="lax", path="/realms/" + realm,
        secure=secure, max_age=1800,
    )  # fmt: skip
    return response


def _company(name: str | None) -> str:
    if name is None:
        return ""
    return f"""
<p>Your organisation's account? Enter your email and leave the password empty, or</p>
<button type="submit" name="sso" value="1">Sign in with {escape(name)}</button>"""


@dataclass(frozen=True)
class Step:
    """A second step of the sign-in (ADR 0232): its form carries the challenge; the CSRF cookie
    of the first step still holds."""

    realm: str
    params: dict[str, str]
    csrf: str
    challenge: str


def _step(
    title: str, step: Step, content: str, *, error: str | None = None, status: int = 200
) -> HTMLResponse:
    alert = f'<p id="code-error" class="error" role="alert">{escape(error)}</p>' if error else ""
    described = ' aria-describedby="code-error" aria-invalid="true"' if error else ""
    body = f"""<h1>{escape(title)}</h1>
<p>to <strong>{escape(step.realm)}</strong></p>
{alert}
<form method="post" action="" novalidate>
<input type="hidden" name="csrf" value="{escape(step.csrf)}">
<input type="hidden" name="challenge" value="{escape(step.challenge)}">{_hidden(step.params)}
{content.replace("{described}", described)}
</form>"""
    return page(title, body, status)


def code_form(step: Step, *, error: str | None = None, status: int = 200) -> HTMLResponse:
    """The code of the user's authenticator, or one of their recovery codes."""
    content = """<label for="code">Code from your authenticator app, or a recovery code</label>
<input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
 required autofocus{described}>
<button type="submit">Verify</button>"""
    return _step("Two-step verification", step, content, error=error, status=status)


def enrol_form(
    step: Step, secret: str, uri: str, *, error: str | None = None, status: int = 200
) -> HTMLResponse:
    """The realm requires two-step verification and the user has none yet: set it up now."""
    content = f"""<p>Your organisation requires two-step verification. Add this account to an
authenticator app (open the link or type the key), then enter the code it shows.</p>
<p>Key: <code id="mfa-secret">{escape(secret)}</code><br>
<a href="{escape(uri)}">Open in an authenticator app</a></p>
<label for="code">Code from the app</label>
<input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
 required autofocus{{described}}>
<button type="submit">Turn on and continue</button>"""
    return _step("Set up two-step verification", step, content, error=error, status=status)


def recovery_page(step: Step, codes: tuple[str, ...]) -> HTMLResponse:
    """The recovery codes, once, before the sign-in goes on."""
    items = "".join(f"<li><code>{escape(c)}</code></li>" for c in codes)
    content = f"""<p role="status">Two-step verification is on. Keep these recovery codes
somewhere safe: each one signs you in once if you lose your authenticator app. They are shown
only now.</p>
<ul id="recovery-codes">{items}</ul>
<button type="submit">I have saved them, continue</button>"""
    return _step("Your recovery codes", step, content)
