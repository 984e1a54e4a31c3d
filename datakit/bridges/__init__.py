"""The bridges: programs that fill the ``github-metadata`` branch with what a
forge knows (spec bridges.md). Each is an application of :mod:`datakit.client`
only; :mod:`datakit.bridges.service` holds what they share (store addresses,
reconnection, signals, metrics)."""
