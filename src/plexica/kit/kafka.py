"""How a Kafka client logs in to the broker: SASL/SCRAM-SHA-512 (ADR 0218), or not at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class KafkaLogin:
    username: str
    password: str = field(repr=False)

    def aiokafka(self) -> dict[str, Any]:
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
        }

    def librdkafka(self) -> dict[str, str]:
        return {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": MECHANISM,
            "sasl.username": self.username,
            "sasl.password": self.password,
        }


def aiokafka_auth(login: KafkaLogin | None) -> dict[str, Any]:
    return login.aiokafka() if login is not None else {}
