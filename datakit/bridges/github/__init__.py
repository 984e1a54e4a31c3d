"""The GitHub bridge (spec/bridges.md §3): ``api`` (REST calls through
githubkit), ``webhooks`` (signature check, event mapping, listener),
``secretfiles`` (token and webhook secret), ``metrics``."""
