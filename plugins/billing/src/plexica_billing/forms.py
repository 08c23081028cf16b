"""What Billing's page forms share: parsing the fields the shell forwards, running the action
so that a refused one leaves nothing written, and what the page shows of a refusal (ADR 0229)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ValidationError

from plexica_sdk.app import PluginContext
from plexica_sdk.errors import PlexicaError
from plexica_sdk.ui import Fragments, back, field_errors

# What a person reads next to a field the server refused (the JSON API keeps pydantic's text).
FORM_MESSAGES = {
    "name": "Enter a name (at most 200 characters).",
    "email": "Enter an e-mail address such as name@example.com.",
    "currency": "Enter a three-letter currency code such as EUR.",
    "code": "Lowercase letters, digits, - and _ (at most 40), starting with a letter or digit.",
    "price": "Enter a price of 0 or more, with at most 2 decimals.",
    "tax_rate": "Enter a rate from 0 to 100, with at most 2 decimals.",
    "description": "Enter a description (at most 500 characters).",
    "quantity": "Enter a quantity above 0.",
    "unit_price": "Enter a price of 0 or more, with at most 2 decimals.",
    "amount": "Enter an amount above 0, with at most 2 decimals.",
    "reason": "Enter a reason (at most 500 characters).",
    "reference": "At most 200 characters.",
    "customer_id": "Choose a customer.",
    "plan_id": "Choose a plan.",
    "trial_days": "Enter a number of days from 0 to 365.",
    "effective": "Enter a date within the current period.",
}
# Lists on one page: a select offers at most this many customers or plans.
CHOICES = 200

Action = Callable[[], Awaitable[object]]
M = TypeVar("M", bound=BaseModel)
# The first words of the message of a refused form, before the API's own.
REFUSED = {
    "new-invoice": "The invoice was not created",
    "line": "The line was not added",
    "issue": "The invoice was not issued",
    "void": "The invoice was not voided",
    "uncollectible": "The invoice was not marked uncollectible",
    "payment": "The payment was not recorded",
    "credit": "The credit note was not issued",
    "new-customer": "The customer was not added",
    "customer": "The customer was not saved",
    "delete-customer": "The customer was not deleted",
    "new-plan": "The plan was not added",
    "plan": "The plan was not saved",
    "delete-plan": "The plan was not deleted",
    "new-subscription": "The subscription was not started",
    "subscription": "The subscription was not changed",
}


class RefusedError(Exception):
    """A form the plugin did not apply: the fields it marks and the API's message."""

    def __init__(self, status: int, errors: dict[str, str], message: str) -> None:
        super().__init__(message)
        self.status, self.errors, self.message = status, errors, message


def page(
    ui: Fragments,
    template: str,
    refused: RefusedError | None,
    action: str,
    form: dict[str, str] | None,
    **context: Any,
) -> HTMLResponse:
    """A page, with what it shows of a refused ``action``: its status, the message above the
    form, the form's fields as they were sent and the errors next to them."""
    shown: dict[str, Any] = {"action": action, "form": form or {}, "error": None, "errors": {}}
    if refused is None:
        return ui.render(template, **shown, **context)
    shown |= {"error": f"{REFUSED[action]}: {refused.message}", "errors": refused.errors}
    return ui.render(template, refused.status, **shown, **context)


def parse(model: type[M], values: dict[str, Any]) -> M:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        errors = field_errors(exc, FORM_MESSAGES)
        # A rule of the whole form (such as "give at least one field") has no field to mark.
        message = errors.pop("form", "correct the fields marked below.")
        raise RefusedError(422, errors, message) from exc


async def apply(ctx: PluginContext, action: Action) -> None:
    """The action (which parses its form, then calls the service) in a savepoint of the
    request's transaction: refused, it leaves nothing written."""
    try:
        async with ctx.db.begin_nested():
            await action()
    except PlexicaError as exc:
        field = exc.details.get("field") if isinstance(exc.details, dict) else None
        errors = {str(field): exc.message} if field else {}
        raise RefusedError(exc.status, errors, exc.message) from exc


async def submit(
    ctx: PluginContext,
    action: Action,
    to: str,
    refused: Callable[[RefusedError], Awaitable[Response]],
) -> Response:
    """A form's answer: ``action`` applied (see ``apply``), then a redirect ``to``; refused,
    the page ``refused`` renders of it."""
    try:
        await apply(ctx, action)
    except RefusedError as exc:
        return await refused(exc)
    return back(to)


# The ``done`` query parameter of a page a form redirected to: which success to announce.
Done = Annotated[str, Query(max_length=20)]
