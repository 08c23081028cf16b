"""The pages the built-in provider shows: the sign-in form (with its CSRF cookie), error pages
and the signed-out page, self-contained and never framed or cached."""

from __future__ import annotations

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
) -> HTMLResponse:
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
<button type="submit">Sign in</button>
</form>"""
    response = page("Sign in", body, status)
    response.set_cookie(
        CSRF_COOKIE, csrf, httponly=True, samesite="lax", path="/realms/" + realm,
        secure=secure, max_age=1800,
    )  # fmt: skip
    return response


def code_form(
    realm: str,
    params: dict[str, str],
    csrf: str,
    challenge: str,
    *,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The second step of a sign-in with TOTP: the code of the user's authenticator, or one of
    their recovery codes (ADR 0232). The CSRF cookie of the first step still holds."""
    hidden = _hidden(params)
    alert = f'<p id="code-error" class="error" role="alert">{escape(error)}</p>' if error else ""
    described = ' aria-describedby="code-error" aria-invalid="true"' if error else ""
    body = f"""<h1>Two-step verification</h1>
<p>to <strong>{escape(realm)}</strong></p>
{alert}
<form method="post" action="" novalidate>
<input type="hidden" name="csrf" value="{escape(csrf)}">
<input type="hidden" name="challenge" value="{escape(challenge)}">{hidden}
<label for="code">Code from your authenticator app, or a recovery code</label>
<input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
 required autofocus{described}>
<button type="submit">Verify</button>
</form>"""
    return page("Two-step verification", body, status)
