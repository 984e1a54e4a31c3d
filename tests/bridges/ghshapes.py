"""Minimal JSON bodies that githubkit's response models accept, for unit
tests over ``httpx.MockTransport``: every required field gets a dummy value
of its type (None where allowed), then the test's own values are merged in.
The stateful fake GitHub (tests/bridges/fakegithub) serves realistic ones."""

from __future__ import annotations

import datetime
import types
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel


def _value(annotation: Any, depth: int) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        if type(None) in args:
            return None
        return _value(args[0], depth)
    if origin is Literal:
        return args[0]
    if origin in (list, tuple, set, frozenset):
        return []
    if origin is dict:
        return {}
    if origin is typing.Annotated:
        return _value(args[0], depth)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return fill(annotation, depth=depth + 1)
    if annotation is bool:
        return False
    if annotation is int:
        return 1
    if annotation is float:
        return 1.0
    if annotation in (datetime.datetime,):
        return "2020-01-01T00:00:00Z"
    if annotation is datetime.date:
        return "2020-01-01"
    return "x"


def fill(model: type[BaseModel], depth: int = 0, **values: Any) -> dict[str, Any]:
    """A JSON object `model` validates: dummies for required fields, then `values`."""
    out: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        if f.is_required():
            out[f.alias or name] = _value(f.annotation, depth)
    out.update(values)
    return out


def _nested(model: type[BaseModel], field: str, **values: Any) -> dict[str, Any]:
    annotation = model.model_fields[field].annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    target = args[0] if args else annotation
    return fill(target, **values)


def _models() -> Any:
    from githubkit_schemas.latest import models

    return models


def user(login: str) -> dict[str, Any]:
    return fill(_models().SimpleUser, login=login)


def pull(number: int, head: str, *, title: str = "T", base: str = "master",
         owner: str = "alice", body: str | None = "", state: str = "open",
         full: bool = False) -> dict[str, Any]:
    m = _models()
    model = m.PullRequest if full else m.PullRequestSimple
    return fill(
        model, number=number, state=state, title=title, body=body, user=user(owner),
        head=_nested(model, "head", sha=head, ref="branch"),
        base=_nested(model, "base", sha="0" * 40, ref=base),
    )


def comment(id: int, login: str, body: str) -> dict[str, Any]:
    return fill(_models().IssueComment, id=id, user=user(login), body=body)


def ref(name: str, sha: str, kind: str = "commit") -> dict[str, Any]:
    return fill(_models().GitRef, ref=name, object={"type": kind, "sha": sha, "url": "x"})


def tag(sha: str, target: str, kind: str = "commit") -> dict[str, Any]:
    return fill(_models().GitTag, sha=sha, object={"type": kind, "sha": target, "url": "x"})


def simple_status(context: str | None, state: str, description: str | None = None,
                  target_url: str | None = None) -> dict[str, Any]:
    return fill(_models().SimpleCommitStatus, context=context, state=state,
                description=description, target_url=target_url)


def combined(sha: str, statuses: list[dict[str, Any]]) -> dict[str, Any]:
    return fill(_models().CombinedCommitStatus, sha=sha, statuses=statuses,
                total_count=len(statuses), state="pending")


def status(context: str, state: str, description: str | None = None,
           target_url: str | None = None) -> dict[str, Any]:
    return fill(_models().Status, context=context, state=state, description=description,
                target_url=target_url)


def hook(id: int, url: str) -> dict[str, Any]:
    return fill(_models().Hook, id=id, name="web", active=True, events=["push"],
                config={"url": url, "content_type": "json"})
