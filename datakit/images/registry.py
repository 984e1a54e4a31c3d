"""A small OCI distribution-spec client on httpx (spec B.3 and the quirks of Part D).

Our own client rather than python-dxf or oras-py: pushing snapshots needs
exactly HEAD/mount/POST+PUT/chunked PATCH with resume, the exact manifest
bytes with their digest checked, streaming from a file, Basic and Bearer
auth, and one-line errors. Those libraries each miss some of it against
Debian's registry (see docs/images.md).

Memory is bounded: blobs are sent from the file in pieces; only manifests and
configs are read whole, under a size cap. Every failure is a RegistryError
with one line naming the registry, what was being done, the HTTP status and
the registry's own error code; the CLI prints it as is.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO
from urllib.parse import quote, urlencode

import httpx

from datakit.images.auth import Credentials
from datakit.images.oci import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MAX_DOCUMENT,
    OCI_INDEX,
    OCI_MANIFEST,
    digest_of,
    valid_digest,
)
from datakit.images.reference import api_host

# What a tag may hold and we can read: an image, or an index of images.
_ACCEPT = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
_MAX_ERROR_BODY = 64 * 1024
_MAX_TOKEN_BODY = 1024 * 1024  # real tokens are a few KiB
_PIECE = 1024 * 1024  # bytes read from the source file at a time
_MAX_RESUMES = 5  # recoveries (416, lost chunk) in a row before giving up


class RegistryError(Exception):
    """A registry operation failed; the message is one line fit for the user."""


class _TransportFailure(RegistryError):
    """The request or its answer was lost on the way (connection reset, timeout)."""


@dataclass(frozen=True)
class Manifest:
    """A manifest (or index) exactly as the registry stores it."""

    data: bytes
    media_type: str
    digest: str  # sha256 of data

    def json(self) -> dict[str, object]:
        value = json.loads(self.data)
        if not isinstance(value, dict):
            raise ValueError("manifest is not a JSON object")
        return value


@dataclass
class _Reply:
    status: int
    reason: str
    headers: httpx.Headers
    body: bytes
    url: httpx.URL
    too_big: bool = False


@dataclass
class _Challenge:
    scheme: str  # "basic" or "bearer"
    params: dict[str, str] = field(default_factory=dict)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parse_challenge(header: str) -> _Challenge | None:
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in re.finditer(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', rest)
    }
    if scheme.lower() in ("basic", "bearer"):
        return _Challenge(scheme.lower(), params)
    return None


def _error_detail(reply: _Reply) -> str:
    """The registry's JSON errors ("CODE: message"), or a bit of its body."""
    try:
        errors = json.loads(reply.body).get("errors")
    except (ValueError, AttributeError):
        errors = None
    if isinstance(errors, list) and errors:
        parts = []
        for err in errors[:3]:
            if isinstance(err, dict):
                code, message = err.get("code", ""), err.get("message", "")
                parts.append(f"{code}: {message}" if message else str(code))
        if parts:
            return _one_line("; ".join(parts))
    text = reply.body[:200].decode("utf-8", "replace").strip()
    return _one_line(text) if text and text.isprintable() else ""


class Registry:
    """A connection to one registry (host[:port] as users write it).

    `chunk_size`: blobs above it go in PATCH chunks of that size. `progress(n)`
    is called with the number of new blob bytes sent (resent bytes are not
    counted twice)."""

    def __init__(
        self,
        registry: str,
        *,
        plain_http: bool = False,
        insecure: bool = False,
        credentials: Credentials | None = None,
        chunk_size: int = 64 * 1024 * 1024,
        timeout: float = 60.0,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.name = registry
        self.base = f"{'http' if plain_http else 'https'}://{api_host(registry)}"
        self.chunk_size = chunk_size
        self.timeout = timeout
        self._credentials = credentials
        self._progress = progress
        self._client = httpx.Client(
            # Plain HTTP speaks no TLS to the registry, so skip building a
            # verifying context (0.2 s of certificate loading per command);
            # a redirect elsewhere is no less safe than plain HTTP, and
            # every blob is checked against its digest anyway.
            verify=not (insecure or plain_http),
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"User-Agent": "datakit-image"},
        )
        self._basic = False  # the registry asked for Basic auth
        self._bearer: _Challenge | None = None  # the registry's token service
        self._tokens: dict[tuple[str, ...], str] = {}

    # -- lifetime ---------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- public operations ------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest at a tag or digest, or None when the registry has none there."""
        what = f"fetching manifest {repository}:{reference}"
        reply = self._call(
            "GET",
            f"{self.base}/v2/{repository}/manifests/{reference}",
            what,
            _pull(repository),
            headers={"Accept": ", ".join(_ACCEPT)},
            max_body=MAX_DOCUMENT,
        )
        if reply.status == 404:
            return None
        self._expect(reply, what, 200)
        if reply.too_big:
            raise RegistryError(f"{self.name}: {what}: manifest larger than {MAX_DOCUMENT} bytes")
        digest = digest_of(reply.body)
        self._check_digest(reply, what, digest)
        if valid_digest(reference) and reference != digest:
            raise RegistryError(
                f"{self.name}: {what}: the registry sent content with digest {digest}"
            )
        media_type = reply.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in _ACCEPT:
            try:
                declared = json.loads(reply.body).get("mediaType")
            except (ValueError, AttributeError):
                declared = None
            media_type = declared if isinstance(declared, str) and declared else media_type
        return Manifest(reply.body, media_type, digest)

    def get_blob(self, repository: str, digest: str, *, max_size: int = 4 * 1024 * 1024) -> bytes:
        """A small blob (an image config), read whole; its digest is verified."""
        what = f"fetching blob {digest} from {repository}"
        reply = self._call(
            "GET",
            f"{self.base}/v2/{repository}/blobs/{digest}",
            what,
            _pull(repository),
            max_body=max_size,
            follow_redirects=True,
        )
        self._expect(reply, what, 200)
        if reply.too_big:
            raise RegistryError(f"{self.name}: {what}: blob larger than {max_size} bytes")
        got = digest_of(reply.body)
        if got != digest:
            raise RegistryError(f"{self.name}: {what}: the registry sent content with digest {got}")
        return reply.body

    def download_blob(self, repository: str, digest: str, dest: Path) -> int:
        """A blob of any size streamed into the file ``dest`` (created or
        truncated); its digest is verified. Returns its size."""
        what = f"fetching blob {digest} from {repository}"
        check = hashlib.sha256()
        size = 0
        with dest.open("wb") as out:

            def sink(piece: bytes) -> None:
                nonlocal size
                check.update(piece)
                out.write(piece)
                size += len(piece)

            reply = self._call(
                "GET",
                f"{self.base}/v2/{repository}/blobs/{digest}",
                what,
                _pull(repository),
                follow_redirects=True,
                sink=sink,
            )
        self._expect(reply, what, 200)
        got = "sha256:" + check.hexdigest()
        if got != digest:
            raise RegistryError(f"{self.name}: {what}: the registry sent content with digest {got}")
        return size

    def has_blob(self, repository: str, digest: str) -> bool:
        what = f"checking blob {digest} in {repository}"
        reply = self._call(
            "HEAD", f"{self.base}/v2/{repository}/blobs/{digest}", what, _pull(repository)
        )
        if reply.status == 404:
            return False
        self._expect(reply, what, 200)
        return True

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Mount a blob from another repository of this registry: True if mounted.

        False when the registry started an upload session instead (the session
        is cancelled) or refused to mount (4xx): the caller uploads."""
        what = f"mounting blob {digest} into {repository} from {from_repository}"
        query = urlencode({"mount": digest, "from": from_repository})
        reply = self._call(
            "POST",
            f"{self.base}/v2/{repository}/blobs/uploads/?{query}",
            what,
            (*_push(repository), f"repository:{from_repository}:pull"),
            headers={"Content-Length": "0"},
        )
        if reply.status == 201:
            return True
        if 400 <= reply.status < 500:
            # Mounting is an optimisation some registries refuse (405 for
            # pull-through caches, 404 for an unknown source): upload instead.
            return False
        self._expect(reply, what, 202)
        location = reply.headers.get("Location")
        if location:
            self._cancel(repository, str(reply.url.join(location)))
        return False

    def upload_blob(self, repository: str, digest: str, size: int, source: BinaryIO) -> None:
        """Upload `size` bytes of the seekable `source` (from its start) as blob `digest`.

        Monolithic (POST, then PUT with the bytes) up to chunk_size; above it
        PATCH chunks, resuming from the registry's offset after a 416 or a lost
        chunk, restarting the session if the registry dropped it."""
        if not valid_digest(digest):
            raise RegistryError(f"{self.name}: blob digest {digest!r} is not sha256:<64 hex>")
        what = f"uploading blob {digest} to {repository}"
        sent = _Sent(self._progress)
        restarts = 0
        while True:
            try:
                location = self._start_upload(repository, what)
                if size <= self.chunk_size:
                    final = location
                    body: _Body | None = _file_body(source, 0, size, sent)
                    length = size
                else:
                    final = self._send_chunks(repository, what, location, size, source, sent)
                    body, length = None, 0
                self._finish_upload(repository, what, final, digest, body, length)
                return
            except _SessionLost as lost:
                restarts += 1
                if restarts > _MAX_RESUMES:
                    raise RegistryError(f"{self.name}: {what}: {lost}; giving up") from None
            except _TransportFailure:
                # A request of the session was lost (a monolithic PUT, the closing
                # PUT, the POST): start over in a new session.
                restarts += 1
                if restarts > _MAX_RESUMES:
                    raise
            # Only the answer to the closing PUT may have been lost: then the blob is there.
            if self.has_blob(repository, digest):
                return

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """Store `data` as the manifest at `reference`; returns its digest (checked)."""
        what = f"pushing manifest {repository}:{reference}"
        digest = digest_of(data)
        reply = self._call(
            "PUT",
            f"{self.base}/v2/{repository}/manifests/{reference}",
            what,
            _push(repository),
            headers={"Content-Type": media_type},
            body=data,
        )
        self._expect(reply, what, 201)
        self._check_digest(reply, what, digest)
        return digest

    # -- uploads ----------------------------------------------------------

    def _start_upload(self, repository: str, what: str) -> str:
        reply = self._call(
            "POST",
            f"{self.base}/v2/{repository}/blobs/uploads/",
            what,
            _push(repository),
            headers={"Content-Length": "0"},
        )
        self._expect(reply, what, 202)
        return self._location(reply, what)

    def _send_chunks(
        self, repository: str, what: str, location: str, size: int, source: BinaryIO, sent: _Sent
    ) -> str:
        offset = 0
        trouble = 0  # recoveries since the last chunk that went through
        lost = ""
        while offset < size:
            end = min(offset + self.chunk_size, size)
            try:
                reply = self._call(
                    "PATCH",
                    location,
                    what,
                    _push(repository),
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{end - 1}",
                        "Content-Length": str(end - offset),
                    },
                    body=_file_body(source, offset, end, sent),
                )
            except _TransportFailure as e:
                reply, lost = None, _one_line(str(e).partition(": ")[2], 200)
            if reply is not None and reply.status == 202:
                location = self._location(reply, what)
                new_offset = self._offset(reply, end)
                if new_offset > offset:
                    offset, trouble = new_offset, 0
                    continue
                # Accepted, yet nothing kept: as bad as a refusal, and
                # retrying it forever would never end.
                trouble += 1
                if trouble > _MAX_RESUMES:
                    raise RegistryError(
                        f"{self.name}: {what}: the registry accepted chunks at offset "
                        f"{offset} {trouble} times without keeping them; giving up"
                    )
                continue
            if reply is not None and reply.status != 416:
                self._expect(reply, what, 202)
            trouble += 1
            why = "chunk refused (416)" if reply is not None else f"chunk lost ({lost})"
            if trouble > _MAX_RESUMES:
                raise RegistryError(f"{self.name}: {what}: {why} {trouble} times; giving up")
            location, offset = self._upload_status(repository, what, location, why)
        return location

    def _upload_status(
        self, repository: str, what: str, location: str, why: str
    ) -> tuple[str, int]:
        """Where the registry's upload session stands (after a 416 or a lost chunk)."""
        try:
            reply = self._call("GET", location, what, _push(repository))
        except _TransportFailure as e:
            raise _SessionLost(f"{why}, then its status could not be read ({e})") from None
        if reply.status != 204:
            # Distribution cancels a session whose state it no longer trusts
            # (BLOB_UPLOAD_INVALID / _UNKNOWN): only a new session helps.
            raise _SessionLost(
                f"{why}, then the upload session was gone (HTTP {reply.status}"
                f"{': ' + _error_detail(reply) if _error_detail(reply) else ''})"
            )
        location = self._location(reply, what)
        offset = self._offset(reply, None)
        if offset == 0:
            # "Range: 0-0" means both nothing and one byte: start over to be sure.
            raise _SessionLost(f"{why}, and nothing of the upload was kept")
        return location, offset

    def _offset(self, reply: _Reply, expected: int | None) -> int:
        """The next byte the registry wants, from its `Range: 0-<last>` header."""
        value = reply.headers.get("Range")
        if value is None:
            if expected is not None:
                return expected
            return 0
        m = re.fullmatch(r"(?:bytes=)?0-(\d+)", value.strip())
        if m is None:
            raise RegistryError(f"{self.name}: upload: unreadable Range header {value!r}")
        last = int(m.group(1))
        return 0 if last == 0 and expected is None else last + 1

    def _finish_upload(
        self,
        repository: str,
        what: str,
        location: str,
        digest: str,
        body: _Body | None,
        length: int,
    ) -> None:
        url = location + ("&" if "?" in location else "?") + "digest=" + quote(digest, safe=":")
        reply = self._call(
            "PUT",
            url,
            what,
            _push(repository),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
            body=body if body is not None else b"",
        )
        self._expect(reply, what, 201)
        self._check_digest(reply, what, digest)

    def _cancel(self, repository: str, location: str) -> None:
        """Cancel an upload session we do not need (best effort: registries purge them)."""
        with contextlib.suppress(RegistryError):
            self._call("DELETE", location, "cancelling an upload", _push(repository))

    def _location(self, reply: _Reply, what: str) -> str:
        location = reply.headers.get("Location")
        if not location:
            raise RegistryError(
                f"{self.name}: {what}: HTTP {reply.status} without a Location header"
            )
        return str(reply.url.join(location))

    # -- requests, auth, errors ---------------------------------------------

    def _call(
        self,
        method: str,
        url: str,
        what: str,
        scopes: Sequence[str],
        *,
        headers: dict[str, str] | None = None,
        body: bytes | _Body | None = None,
        max_body: int = _MAX_ERROR_BODY,
        follow_redirects: bool = False,
        sink: Callable[[bytes], None] | None = None,
    ) -> _Reply:
        """One request, authenticated as the registry wants (one retry after a 401)."""
        reply = self._send(
            method, url, what, scopes, headers, body, max_body, follow_redirects, sink
        )
        if reply.status != 401:
            return reply
        challenge = _parse_challenge(reply.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise self._auth_error(reply, what)
        if challenge.scheme == "basic":
            if self._credentials is None or self._basic:
                raise self._auth_error(reply, what)
            self._basic = True
        else:
            # No token yet, or the one we sent was refused: get one for exactly
            # these scopes (plus any the registry names) and retry once with it.
            self._bearer = challenge
            extra = challenge.params.get("scope", "").split()
            self._fetch_token(scopes, extra, what)
        reply = self._send(
            method, url, what, scopes, headers, body, max_body, follow_redirects, sink
        )
        if reply.status == 401:
            raise self._auth_error(reply, what)
        return reply

    def _send(
        self,
        method: str,
        url: str,
        what: str,
        scopes: Sequence[str],
        headers: dict[str, str] | None,
        body: bytes | _Body | None,
        max_body: int,
        follow_redirects: bool,
        sink: Callable[[bytes], None] | None = None,
    ) -> _Reply:
        """``sink``, if given, takes the body of a 2xx answer piece by piece
        (a blob download) instead of it being kept."""
        all_headers = dict(headers or {})
        all_headers.update(self._auth_header(scopes, what))
        content: bytes | Iterator[bytes] | None
        content = body if isinstance(body, bytes | None) else body()
        try:
            request = self._client.build_request(method, url, headers=all_headers, content=content)
            response = self._client.send(request, stream=True, follow_redirects=follow_redirects)
            try:
                chunks = []
                read = 0
                too_big = False
                if sink is not None and 200 <= response.status_code < 300:
                    for piece in response.iter_bytes():
                        sink(piece)
                elif method != "HEAD":
                    for piece in response.iter_bytes():
                        read += len(piece)
                        if read > max_body:
                            too_big = True
                            break
                        chunks.append(piece)
                return _Reply(
                    response.status_code,
                    response.reason_phrase,
                    response.headers,
                    b"".join(chunks),
                    response.url,
                    too_big,
                )
            finally:
                response.close()
        except _SourceError as e:
            raise RegistryError(f"{self.name}: {what}: {e}") from None
        except httpx.TimeoutException:
            raise _TransportFailure(
                f"{self.name}: {what}: no answer within {self.timeout:g}s ({method} {_path(url)})"
            ) from None
        except httpx.ConnectError as e:
            cause = _one_line(str(e)) or "failed"
            hint = ""
            if "CERTIFICATE_VERIFY_FAILED" in cause:
                hint = " (--insecure skips TLS verification)"
            elif "WRONG_VERSION_NUMBER" in cause or "record layer failure" in cause:
                hint = " (a plain-HTTP registry? give --plain-http)"
            raise RegistryError(
                f"{self.name}: {what}: cannot connect to {self.base}: {cause}{hint}"
            ) from None
        except (httpx.TransportError, httpx.StreamError) as e:
            raise _TransportFailure(
                f"{self.name}: {what}: connection failed during {method} {_path(url)}: "
                f"{_one_line(str(e)) or type(e).__name__}"
            ) from None
        except httpx.InvalidURL as e:
            raise RegistryError(f"{self.name}: {what}: bad URL {url!r}: {e}") from None
        except httpx.HTTPError as e:  # an undecodable body, a redirect loop...
            raise RegistryError(
                f"{self.name}: {what}: {method} {_path(url)}: "
                f"{_one_line(str(e)) or type(e).__name__}"
            ) from None

    def _auth_header(self, scopes: Sequence[str], what: str) -> dict[str, str]:
        if self._bearer is not None:
            key = self._token_key(scopes)
            token = self._tokens.get(key) or self._covering_token(scopes)
            if token is None:
                self._fetch_token(scopes, [], what)
                token = self._tokens[key]
            return {"Authorization": f"Bearer {token}"}
        if self._basic and self._credentials is not None:
            return {"Authorization": _basic(self._credentials)}
        return {}

    @staticmethod
    def _token_key(scopes: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted(set(scopes)))

    def _covering_token(self, scopes: Sequence[str]) -> str | None:
        """A token asked for with scopes covering these (pull,push covers pull)."""
        needed = _grants(scopes)
        for key, token in self._tokens.items():
            if needed <= _grants(key):
                return token
        return None

    def _fetch_token(self, scopes: Sequence[str], extra: Sequence[str], what: str) -> None:
        assert self._bearer is not None
        realm = self._bearer.params.get("realm")
        if not realm:
            raise RegistryError(f"{self.name}: {what}: Bearer challenge without a realm")
        params: list[tuple[str, str | int | float | bool | None]] = []
        if "service" in self._bearer.params:
            params.append(("service", self._bearer.params["service"]))
        for scope in sorted({*scopes, *extra}):
            params.append(("scope", scope))
        headers = {}
        if self._credentials is not None:
            headers["Authorization"] = _basic(self._credentials)
        try:
            with self._client.stream("GET", realm, params=params, headers=headers) as response:
                body = bytearray()
                for piece in response.iter_bytes():
                    body += piece
                    if len(body) > _MAX_TOKEN_BODY:
                        raise RegistryError(
                            f"{self.name}: {what}: token service {realm} sent more than "
                            f"{_MAX_TOKEN_BODY} bytes"
                        )
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise RegistryError(
                f"{self.name}: {what}: cannot get a token from {realm}: {_one_line(str(e))}"
            ) from None
        if response.status_code != 200:
            who = (
                f"credentials for {self._credentials.username} were refused"
                if self._credentials is not None
                else "anonymous access refused; give --auth-file"
            )
            raise RegistryError(
                f"{self.name}: {what}: token service {realm} answered"
                f" {response.status_code} {response.reason_phrase} ({who})"
            )
        try:
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self.name}: {what}: token service {realm} sent no token")
        self._tokens[self._token_key(scopes)] = token

    def _auth_error(self, reply: _Reply, what: str) -> RegistryError:
        detail = _error_detail(reply)
        detail = f" [{detail}]" if detail else ""
        if self._credentials is None:
            return RegistryError(
                f"{self.name}: authentication required (401 Unauthorized) for {what}{detail};"
                " no credentials found for this registry (give --auth-file)"
            )
        return RegistryError(
            f"{self.name}: credentials for {self._credentials.username} were refused"
            f" (401 Unauthorized) for {what}{detail}"
        )

    def _expect(self, reply: _Reply, what: str, status: int) -> None:
        if reply.status == status:
            return
        detail = _error_detail(reply)
        raise RegistryError(
            f"{self.name}: {what}: HTTP {reply.status} {reply.reason}"
            + (f" ({detail})" if detail else "")
        )

    def _check_digest(self, reply: _Reply, what: str, digest: str) -> None:
        given = reply.headers.get("Docker-Content-Digest")
        if given is not None and given.strip() != digest:
            raise RegistryError(
                f"{self.name}: {what}: the registry reports digest {given.strip()},"
                f" expected {digest}"
            )


# -- helpers ---------------------------------------------------------------

_Body = Callable[[], Iterator[bytes]]


class _SessionLost(Exception):
    """The upload session cannot be resumed; the upload restarts in a new one."""


class _SourceError(Exception):
    """The file being uploaded ended early or could not be read."""


class _Sent:
    """Counts blob bytes for progress, each byte once even when a chunk is resent."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.progress = progress
        self.high = 0

    def reached(self, position: int) -> None:
        if position > self.high:
            if self.progress is not None:
                self.progress(position - self.high)
            self.high = position


def _file_body(source: BinaryIO, start: int, end: int, sent: _Sent) -> _Body:
    """A re-startable body: bytes [start, end) of `source`, read in pieces when sent."""

    def pieces() -> Iterator[bytes]:
        try:
            source.seek(start)
        except OSError as e:
            raise _SourceError(f"cannot seek the blob file: {e}") from None
        position = start
        while position < end:
            try:
                piece = source.read(min(_PIECE, end - position))
            except OSError as e:
                raise _SourceError(f"cannot read the blob file: {e}") from None
            if not piece:
                raise _SourceError(f"the blob file ended at byte {position}, expected {end}")
            position += len(piece)
            yield piece
            sent.reached(position)

    return pieces


def _grants(scopes: Sequence[str]) -> set[tuple[str, str]]:
    """("repository:a/b:pull,push",) -> {("repository:a/b", "pull"), ("repository:a/b", "push")}."""
    grants: set[tuple[str, str]] = set()
    for scope in scopes:
        resource, _, actions = scope.rpartition(":")
        grants.update((resource, action) for action in actions.split(","))
    return grants


def _pull(repository: str) -> tuple[str, ...]:
    return (f"repository:{repository}:pull",)


def _push(repository: str) -> tuple[str, ...]:
    return (f"repository:{repository}:pull,push",)


def _basic(credentials: Credentials) -> str:
    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    return f"Basic {token}"


def _path(url: str) -> str:
    """The URL without scheme, host and query (upload states are long and say nothing)."""
    return httpx.URL(url).path
