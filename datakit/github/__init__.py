"""The GitHub metadata model and the ``github-metadata`` branch layout
(spec/bridges.md §1-2), shared by the bridges and the CI.

* :mod:`datakit.github.model`: pure values (repos, PRs, refs, statuses,
  snapshots, diffs, events);
* :mod:`datakit.github.capabilities`: the ``-c`` grammar and filtering;
* :mod:`datakit.github.tree`: reading and writing the layout through
  :mod:`datakit.client` only, so it works on a server or a Git repository.
"""
