"""Image references: `HOST[:PORT]/REPO[:TAG|@DIGEST]`, checked against the distribution spec.

A reference names the registry explicitly (we never guess Docker Hub for a
bare `name:tag`), so a typo cannot push snapshots somewhere unexpected. Names
are checked here, once, so a bad `--to` fails at start with one line instead
of as an HTTP 400 halfway through a push.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from datakit.images.oci import valid_digest

# distribution-spec (spec B.3): one path component, and the whole repository name.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# A DNS name or IPv4 address, or a bracketed IPv6 address; optional port.
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_MAX_REPOSITORY = 255

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


class RefError(ValueError):
    """An image reference that cannot be used; the message names the input and the problem."""


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference. `registry` is the host[:port] exactly as written."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if there is one, else the tag."""
        if self.digest is not None:
            return self.digest
        assert self.tag is not None
        return self.tag

    @property
    def api_host(self) -> str:
        """The host[:port] to talk HTTP to (Docker Hub's API is not at docker.io)."""
        return api_host(self.registry)

    def with_tag(self, tag: str) -> ImageRef:
        """The same repository at another tag (no digest)."""
        return parse_ref(f"{self.registry}/{self.repository}:{tag}")

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def valid_tag(tag: str) -> bool:
    """A tag as the distribution spec allows (B.3), in references and in
    OCI layouts alike."""
    return _TAG.fullmatch(tag) is not None


def api_host(registry: str) -> str:
    """The host[:port] serving the registry API for a registry as users name it."""
    return DOCKER_HUB_API if registry in (DOCKER_HUB, "index.docker.io") else registry


def _looks_like_host(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost" or part.startswith("[")


def parse_ref(text: str) -> ImageRef:
    """Parse `HOST[:PORT]/REPO[:TAG][@sha256:HEX]`; the tag defaults to `latest`.

    Raises RefError (one line naming `text`) for anything the registry would refuse."""
    if not text or text != text.strip() or any(c.isspace() for c in text):
        raise RefError(f"image reference {text!r}: empty or contains whitespace")
    host, slash, rest = text.partition("/")
    if not slash or not _looks_like_host(host):
        raise RefError(
            f"image reference {text!r}: no registry host (write HOST[:PORT]/REPOSITORY[:TAG],"
            " e.g. 127.0.0.1:5000/dk/site:latest)"
        )
    if not _HOST.fullmatch(host):
        raise RefError(f"image reference {text!r}: {host!r} is not a valid registry host[:port]")
    port = host.rpartition(":")[2] if not host.endswith("]") and ":" in host else None
    if port is not None and not 0 < int(port) < 65536:
        raise RefError(f"image reference {text!r}: port {port} out of range")

    digest: str | None = None
    rest, at, digest_text = rest.partition("@")
    if at:
        if not valid_digest(digest_text):
            raise RefError(
                f"image reference {text!r}: digest {digest_text!r} is not sha256:<64 lowercase hex>"
            )
        digest = digest_text
    tag: str | None = None
    # A ':' after the last '/' starts the tag (a ':' before it belongs to the host).
    if ":" in rest.rpartition("/")[2]:
        rest, _, tag = rest.rpartition(":")
        if not valid_tag(tag):
            raise RefError(
                f"image reference {text!r}: tag {tag!r} is not allowed"
                " (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
            )
    repository = rest
    if host in (DOCKER_HUB, "index.docker.io") and "/" not in repository:
        repository = f"library/{repository}"
    if not repository:
        raise RefError(f"image reference {text!r}: no repository name after the registry")
    if not _REPOSITORY.fullmatch(repository):
        hint = " (must be lowercase)" if repository.lower() != repository else ""
        raise RefError(
            f"image reference {text!r}: repository {repository!r} is not a valid name{hint}"
            " (lowercase letters and digits separated by '.', '_', '__', '-' or '/')"
        )
    if len(repository) > _MAX_REPOSITORY:
        raise RefError(
            f"image reference {text!r}: repository name longer than {_MAX_REPOSITORY} characters"
        )
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(registry=host, repository=repository, tag=tag, digest=digest)
