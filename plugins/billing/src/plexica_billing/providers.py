"""Payment providers: the interface, and the built-in manual / bank-transfer provider."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol
from uuid import UUID


@dataclass(frozen=True)
class Charge:
    invoice_id: UUID
    amount: Decimal
    currency: str
    reference: str


@dataclass(frozen=True)
class Receipt:
    provider: str
    reference: str


class PaymentProvider(Protocol):
    name: str

    async def collect(self, charge: Charge) -> Receipt:
        """Collect ``charge`` or raise a PlexicaError; called inside the payment's transaction."""
        ...


class ManualProvider:
    """Money received outside Plexica (bank transfer, cash): recording it is the collection."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def collect(self, charge: Charge) -> Receipt:
        return Receipt(self.name, charge.reference)


PROVIDERS: dict[str, PaymentProvider] = {
    p.name: p for p in (ManualProvider("manual"), ManualProvider("bank_transfer"))
}
