"""ADR 0254: the deploy pins every third-party image of the chart by digest, so that with CI's
digests of Plexica's own images no container of the release runs an image by tag."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from deploy import k8s_render
from deploy.image_pins import pins, third_party_images
from tests.deploy.test_boundaries import containers, pods

VALUES = "values-self-hosted.yaml"


def digest_of(ref: str) -> str:
    """A registry's answer, for the logic around it (the lookup itself runs in CI's deploy)."""
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()


def rendered_text(values: dict[str, Any]) -> str:
    return "\n---\n".join(k8s_render.render(None, **values).values())


def test_every_container_of_the_release_runs_an_image_by_digest() -> None:
    values: dict[str, Any] = k8s_render.values(VALUES)
    registry = values["image"]["registry"]
    found = third_party_images(rendered_text(values), registry)
    assert {"postgres", "redpandadata/redpanda", "quay.io/keycloak/keycloak"} <= found.keys()
    assert all(ref.startswith(f"{repo}:") for repo, ref in found.items())
    own = {name: digest_of(name) for name in ("core-api", "worker", "frontend", "plugin-crm",
                                               "plugin-billing")}  # fmt: skip
    third = pins(found, digest_of)["image"]["digests"]
    values["image"] = {**values["image"], "digests": own | third}
    docs = k8s_render.documents(k8s_render.render(None, **values))
    images = {c["image"] for pod in pods(docs).values() for c in containers(pod)}
    assert images
    by_tag = [i for i in images if "@sha256:" not in i]
    assert by_tag == [], by_tag
    assert f"postgres@{digest_of(found['postgres'])}" in images


def test_a_pinned_image_is_left_and_an_answer_that_is_no_digest_refused() -> None:
    text = 'image: "postgres@sha256:' + "a" * 64 + '"\n      image: redis:8.4-alpine\n'
    assert third_party_images(text, "") == {"redis": "redis:8.4-alpine"}
    with pytest.raises(ValueError, match="no sha256 digest"):
        pins({"redis": "redis:8.4-alpine"}, lambda _: "latest")
    with pytest.raises(ValueError, match="names no tag"):
        third_party_images("image: registry.local:5000/thing\n", "")
