"""GitHub's JSON shapes for the fake's state: REST responses and webhook payloads.

Field names, nesting and JSON types follow api.github.com (checked against the
recorded exchanges of `@octokit/fixtures`, the payloads of
`@octokit/webhooks-examples` and githubkit's typed models in
`tests/bridges/test_fake_github_shapes.py`).  API URLs point at the fake's own
base URL so that clients following them (pagination `Link`s) stay on loopback.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from tests.bridges.fakegithub.state import (
    Comment,
    Commit,
    Hook,
    PullRequest,
    Repo,
    State,
    Status,
    TagObject,
    now_iso,
)

Json = dict[str, Any]
HTML = "https://github.com"

_REPO_URLS = [
    ("forks_url", "/forks"), ("keys_url", "/keys{/key_id}"),
    ("collaborators_url", "/collaborators{/collaborator}"), ("teams_url", "/teams"),
    ("hooks_url", "/hooks"), ("issue_events_url", "/issues/events{/number}"),
    ("events_url", "/events"), ("assignees_url", "/assignees{/user}"),
    ("branches_url", "/branches{/branch}"), ("tags_url", "/tags"),
    ("blobs_url", "/git/blobs{/sha}"), ("git_tags_url", "/git/tags{/sha}"),
    ("git_refs_url", "/git/refs{/sha}"), ("trees_url", "/git/trees{/sha}"),
    ("statuses_url", "/statuses/{sha}"), ("languages_url", "/languages"),
    ("stargazers_url", "/stargazers"), ("contributors_url", "/contributors"),
    ("subscribers_url", "/subscribers"), ("subscription_url", "/subscription"),
    ("commits_url", "/commits{/sha}"), ("git_commits_url", "/git/commits{/sha}"),
    ("comments_url", "/comments{/number}"), ("issue_comment_url", "/issues/comments{/number}"),
    ("contents_url", "/contents/{+path}"), ("compare_url", "/compare/{base}...{head}"),
    ("merges_url", "/merges"), ("archive_url", "/{archive_format}{/ref}"),
    ("downloads_url", "/downloads"), ("issues_url", "/issues{/number}"),
    ("pulls_url", "/pulls{/number}"), ("milestones_url", "/milestones{/number}"),
    ("notifications_url", "/notifications{?since,all,participating}"),
    ("labels_url", "/labels{/name}"), ("releases_url", "/releases{/id}"),
    ("deployments_url", "/deployments"),
]


def node_id(kind: str, ident: object) -> str:
    return base64.b64encode(f"0:{kind}{ident}".encode()).decode()


class Shapes:
    """Renders state objects as GitHub JSON, with API URLs under `api`."""

    def __init__(self, state: State, api: str) -> None:
        self.state = state
        self.api = api.rstrip("/")

    # -- users and repositories -------------------------------------------------

    def user(self, login: str) -> Json:
        u = self.state.user(login)
        url = f"{self.api}/users/{login}"
        return {
            "login": login, "id": u.id, "node_id": node_id("User", u.id),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{u.id}?v=4",
            "gravatar_id": "", "url": url, "html_url": f"{HTML}/{login}",
            "followers_url": f"{url}/followers",
            "following_url": f"{url}/following{{/other_user}}",
            "gists_url": f"{url}/gists{{/gist_id}}",
            "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{url}/subscriptions",
            "organizations_url": f"{url}/orgs", "repos_url": f"{url}/repos",
            "events_url": f"{url}/events{{/privacy}}",
            "received_events_url": f"{url}/received_events",
            "type": "User", "site_admin": False,
        }

    def repo_url(self, repo: Repo) -> str:
        return f"{self.api}/repos/{repo.full_name}"

    def repository(self, repo: Repo, variant: str = "full") -> Json:
        """A repository as GitHub shows it in four places: `full` (GET /repos/u/r,
        with permissions and merge settings), `pull` (a PR's head and base repo:
        some merge settings), `embedded` (in webhooks and combined statuses) and
        `push` (push webhooks: epoch-second `created_at` and `pushed_at`, `owner`
        with name and email, `stargazers`, `master_branch`)."""
        push = variant == "push"
        url = self.repo_url(repo)
        owner = self.user(repo.owner)
        if push:
            owner = {"name": repo.owner, "email": f"{repo.owner}@users.noreply.github.com",
                     **owner}
        open_issues = sum(1 for p in repo.pulls.values() if p.state == "open")
        out: Json = {
            "id": repo.id, "node_id": node_id("Repository", repo.id), "name": repo.name,
            "full_name": repo.full_name, "private": False, "owner": owner,
            "html_url": f"{HTML}/{repo.full_name}", "description": None, "fork": False,
            "url": url,
        }
        out.update({key: url + suffix for key, suffix in _REPO_URLS})
        out.update({
            "created_at": int(repo.created) if push else now_iso(repo.created),
            "updated_at": now_iso(repo.pushed),
            "pushed_at": int(repo.pushed) if push else now_iso(repo.pushed),
            "git_url": f"git://github.com/{repo.full_name}.git",
            "ssh_url": f"git@github.com:{repo.full_name}.git",
            "clone_url": f"{HTML}/{repo.full_name}.git",
            "svn_url": f"{HTML}/{repo.full_name}",
            "homepage": None, "size": 0, "stargazers_count": 0, "watchers_count": 0,
            "language": None, "has_issues": True, "has_projects": True,
            "has_downloads": True, "has_wiki": True, "has_pages": False,
            "has_discussions": False, "forks_count": 0, "mirror_url": None,
            "archived": False, "disabled": False, "open_issues_count": open_issues,
            "license": None, "is_template": False,
            "web_commit_signoff_required": False, "topics": [], "visibility": "public",
            "forks": 0, "open_issues": open_issues, "watchers": 0,
            "default_branch": repo.default_branch,
        })
        if push:
            out.update({"stargazers": 0, "master_branch": repo.default_branch})
        if variant in ("full", "pull"):
            out.update({"allow_squash_merge": True, "allow_merge_commit": True,
                        "allow_rebase_merge": True, "delete_branch_on_merge": False})
        if variant == "full":
            out.update({
                "permissions": {"admin": True, "maintain": True, "push": True,
                                "triage": True, "pull": True},
                "temp_clone_token": "", "allow_forking": True, "allow_auto_merge": False,
                "allow_update_branch": False, "use_squash_pr_title_as_default": False,
                "network_count": 0, "subscribers_count": 0,
            })
        return out

    # -- git data --------------------------------------------------------------

    def ref(self, repo: Repo, name: str) -> Json:
        sha = repo.refs[name]
        kind = repo.object_type(sha)
        return {
            "ref": name, "node_id": node_id("Ref", f"{repo.id}:{name}"),
            "url": f"{self.repo_url(repo)}/git/{name}",
            "object": {"sha": sha, "type": kind,
                       "url": f"{self.repo_url(repo)}/git/{kind}s/{sha}"},
        }

    def tag(self, repo: Repo, tag: TagObject) -> Json:
        return {
            "node_id": node_id("Tag", tag.sha), "sha": tag.sha,
            "url": f"{self.repo_url(repo)}/git/tags/{tag.sha}", "tag": tag.tag,
            "message": tag.message,
            "tagger": {"name": tag.tagger, "email": f"{tag.tagger}@example.com",
                       "date": now_iso(tag.timestamp)},
            "object": {"sha": tag.object_sha, "type": tag.object_type,
                       "url": f"{self.repo_url(repo)}/git/{tag.object_type}s/{tag.object_sha}"},
            "verification": {"verified": False, "reason": "unsigned", "signature": None,
                             "payload": None, "verified_at": None},
        }

    def git_person(self, login: str, t: float) -> Json:
        return {"name": login, "email": f"{login}@example.com", "date": now_iso(t)}

    def commit(self, repo: Repo, c: Commit) -> Json:
        """The commit object embedded in a `status` webhook (GET /commits/{sha})."""
        url = self.repo_url(repo)
        tree = f"{c.sha[:20]}{'0' * 20}"
        return {
            "sha": c.sha, "node_id": node_id("Commit", c.sha),
            "commit": {
                "author": self.git_person(c.author, c.timestamp),
                "committer": self.git_person(c.author, c.timestamp),
                "message": c.message,
                "tree": {"sha": tree, "url": f"{url}/git/trees/{tree}"},
                "url": f"{url}/git/commits/{c.sha}", "comment_count": 0,
                "verification": {"verified": False, "reason": "unsigned",
                                 "signature": None, "payload": None, "verified_at": None},
            },
            "url": f"{url}/commits/{c.sha}",
            "html_url": f"{HTML}/{repo.full_name}/commit/{c.sha}",
            "comments_url": f"{url}/commits/{c.sha}/comments",
            "author": self.user(c.author), "committer": self.user(c.author),
            "parents": [{"sha": p, "url": f"{url}/commits/{p}",
                         "html_url": f"{HTML}/{repo.full_name}/commit/{p}"} for p in c.parents],
        }

    def push_commit(self, repo: Repo, c: Commit) -> Json:
        """A commit as listed in a `push` webhook (`commits[]`, `head_commit`)."""
        person = {"name": c.author, "email": f"{c.author}@example.com", "username": c.author}
        return {
            "id": c.sha, "tree_id": f"{c.sha[:20]}{'0' * 20}", "distinct": True,
            "message": c.message, "timestamp": now_iso(c.timestamp),
            "url": f"{HTML}/{repo.full_name}/commit/{c.sha}",
            "author": person, "committer": person, "added": [], "removed": [], "modified": [],
        }

    # -- statuses --------------------------------------------------------------

    def status(self, repo: Repo, s: Status) -> Json:
        creator = self.user(s.creator)
        return {
            "url": f"{self.repo_url(repo)}/statuses/{s.sha}",
            "avatar_url": creator["avatar_url"], "id": s.id,
            "node_id": node_id("StatusContext", s.id), "state": s.state,
            "description": s.description, "target_url": s.target_url, "context": s.context,
            "created_at": now_iso(s.created), "updated_at": now_iso(s.created),
            "creator": creator,
        }

    def simple_status(self, repo: Repo, s: Status) -> Json:
        """A status inside a combined status: no `creator`."""
        out = self.status(repo, s)
        del out["creator"]
        return out

    def combined_status(self, repo: Repo, sha: str, statuses: list[Json], state: str,
                        total: int) -> Json:
        url = self.repo_url(repo)
        return {
            "state": state, "statuses": statuses, "sha": sha, "total_count": total,
            "repository": self.minimal_repository(repo),
            "commit_url": f"{url}/commits/{sha}", "url": f"{url}/commits/{sha}/status",
        }

    def minimal_repository(self, repo: Repo) -> Json:
        full = self.repository(repo, "embedded")
        keep = ("id", "node_id", "name", "full_name", "private", "owner", "html_url",
                "description", "fork", "url", *(k for k, _ in _REPO_URLS))
        return {k: full[k] for k in keep}

    # -- pull requests and comments -------------------------------------------

    def pull(self, repo: Repo, pr: PullRequest, *, full: bool = True) -> Json:
        """A PR: `full` for GET /pulls/{n} and webhooks, the list item otherwise."""
        url = self.repo_url(repo)
        pr_url = f"{url}/pulls/{pr.number}"
        html = f"{HTML}/{repo.full_name}/pull/{pr.number}"
        repo_json = self.repository(repo, "pull")
        closed = now_iso(pr.closed) if pr.closed is not None else None

        def side(ref: str, sha: str) -> Json:
            return {"label": f"{repo.owner}:{ref}", "ref": ref, "sha": sha,
                    "user": self.user(repo.owner), "repo": repo_json}

        out: Json = {
            "url": pr_url, "id": pr.id, "node_id": node_id("PullRequest", pr.id),
            "html_url": html, "diff_url": f"{html}.diff", "patch_url": f"{html}.patch",
            "issue_url": f"{url}/issues/{pr.number}", "number": pr.number,
            "state": pr.state, "locked": False, "title": pr.title,
            "user": self.user(pr.user), "body": pr.body,
            "created_at": now_iso(pr.created), "updated_at": now_iso(pr.updated),
            "closed_at": closed, "merged_at": None, "merge_commit_sha": None,
            "assignee": None, "assignees": [], "requested_reviewers": [],
            "requested_teams": [], "labels": [], "milestone": None, "draft": False,
            "commits_url": f"{pr_url}/commits", "review_comments_url": f"{pr_url}/comments",
            "review_comment_url": f"{url}/pulls/comments{{/number}}",
            "comments_url": f"{url}/issues/{pr.number}/comments",
            "statuses_url": f"{url}/statuses/{pr.head_sha}",
            "head": side(pr.head_ref, pr.head_sha),
            "base": side(pr.base_ref, repo.resolve(pr.base_ref) or pr.head_sha),
            "_links": {
                "self": {"href": pr_url}, "html": {"href": html},
                "issue": {"href": f"{url}/issues/{pr.number}"},
                "comments": {"href": f"{url}/issues/{pr.number}/comments"},
                "review_comments": {"href": f"{pr_url}/comments"},
                "review_comment": {"href": f"{url}/pulls/comments{{/number}}"},
                "commits": {"href": f"{pr_url}/commits"},
                "statuses": {"href": f"{url}/statuses/{pr.head_sha}"},
            },
            "author_association": "OWNER" if pr.user == repo.owner else "CONTRIBUTOR",
            "auto_merge": None, "active_lock_reason": None,
        }
        if full:
            out.update({
                "merged": False, "mergeable": True, "rebaseable": True,
                "mergeable_state": "clean", "merged_by": None,
                "comments": len(repo.comments.get(pr.number, [])), "review_comments": 0,
                "maintainer_can_modify": False, "commits": 1, "additions": 1,
                "deletions": 0, "changed_files": 1,
            })
        return out

    def comment(self, repo: Repo, c: Comment) -> Json:
        url = self.repo_url(repo)
        return {
            "url": f"{url}/issues/comments/{c.id}",
            "html_url": f"{HTML}/{repo.full_name}/pull/{c.issue}#issuecomment-{c.id}",
            "issue_url": f"{url}/issues/{c.issue}", "id": c.id,
            "node_id": node_id("IssueComment", c.id), "user": self.user(c.user),
            "created_at": now_iso(c.created), "updated_at": now_iso(c.updated),
            "author_association": "OWNER" if c.user == repo.owner else "CONTRIBUTOR",
            "body": c.body, "performed_via_github_app": None,
        }

    # -- hooks -----------------------------------------------------------------

    def hook(self, repo: Repo, h: Hook) -> Json:
        url = f"{self.repo_url(repo)}/hooks/{h.id}"
        config = dict(h.config)
        if config.get("secret"):
            config["secret"] = "********"
        return {
            "type": "Repository", "id": h.id, "name": h.name, "active": h.active,
            "events": list(h.events), "config": config,
            "updated_at": now_iso(h.updated), "created_at": now_iso(h.created),
            "url": url, "test_url": f"{url}/test", "ping_url": f"{url}/pings",
            "deliveries_url": f"{url}/deliveries", "last_response": dict(h.last_response),
        }

    # -- errors ----------------------------------------------------------------

    @staticmethod
    def error(message: str, doc: str = "https://docs.github.com/rest",
              errors: list[dict[str, str]] | None = None, status: int | None = None) -> Json:
        out: Json = {"message": message}
        if errors is not None:
            out["errors"] = errors
        out["documentation_url"] = doc
        if status is not None:
            out["status"] = str(status)
        return out


def epoch() -> int:
    return int(time.time())
