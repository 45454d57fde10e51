"""What the local node knows of an image it cannot pull: its entrypoint, and whether its pods need a network
namespace of their own.

Pods run from the project's virtualenv, so a container that sets no `command` (it relies on the image's
ENTRYPOINT, as the chart's operator Deployment does) needs the entrypoint from here. The kubelet's rules
apply: `command` replaces the entrypoint, `args` follow whichever runs (the image's CMD is not modelled).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OPERATOR_REPOSITORY = "ghcr.io/kubetune/kubetune-operator"


@dataclass(frozen=True)
class ImageProfile:
    entrypoint: tuple[str, ...]
    """The image's ENTRYPOINT, resolved against the node's PATH (the virtualenv's bin first)."""
    own_network: bool = False
    """Run its pods in a network namespace of their own (see `network`): for servers on fixed ports, which
    two replicas on this one host would otherwise fight over, and which must not listen on the host."""


KNOWN_IMAGES: Mapping[str, ImageProfile] = {
    # Dockerfile: ENTRYPOINT ["kubetune", "operator"]; it serves /metrics and the liveness probe on 0.0.0.0
    OPERATOR_REPOSITORY: ImageProfile(("kubetune", "operator"), own_network=True),
}


def repository(image: str) -> str:
    """`registry/name:tag@digest` -> `registry/name` (a registry's port is not a tag)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def profile_of(image: str, images: Mapping[str, ImageProfile]) -> ImageProfile | None:
    return images.get(repository(image))


def container_command(
    image: str, command: Sequence[str] | None, args: Sequence[str] | None, images: Mapping[str, ImageProfile]
) -> list[str]:
    """The argv the container runs; a container without `command` needs an image this node knows."""
    if command:
        return [*command, *(args or [])]
    profile = profile_of(image, images)
    if profile is None:
        raise ValueError(f"image {image} sets the command, but the local node knows no entrypoint for it")
    return [*profile.entrypoint, *(args or [])]
