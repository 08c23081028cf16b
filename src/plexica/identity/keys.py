"""RS256 signing keys of a realm: generation, JWK export and parsing."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_pem: str
    public_jwk: dict[str, Any]


def generate() -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    # Random first: a kid never starts with "-", which a command line would take for an option.
    kid = secrets.token_hex(2) + "-" + _thumbprint(jwk)
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return SigningKey(kid=kid, private_pem=pem, public_jwk=jwk)


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint, shortened: a kid that names the key material."""
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:16]


def public_key_from_jwk(jwk: dict[str, Any]) -> Any | None:
    """The RSA public key of a JWKS entry, or None for anything that is not an RS256 sig key."""
    if jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig":
        return None
    if jwk.get("alg", "RS256") != "RS256":
        return None
    try:
        return RSAAlgorithm.from_jwk(jwk)
    except (ValueError, KeyError, TypeError):
        return None
