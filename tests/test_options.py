"""datakit/options.py: the log level every command picks the same way, and
the seconds type."""

from __future__ import annotations

import argparse
import logging

import pytest

from datakit.options import LEVELS, UsageError, log_level, seconds


def test_flags_beat_the_environment_and_quiet_beats_all() -> None:
    env = {"DATAKIT_VERBOSE": "debug"}
    assert log_level(environ={}) == logging.WARNING
    assert log_level(environ=env) == logging.DEBUG
    assert log_level(verbose=1, environ=env) == logging.INFO
    assert log_level(verbose=2, environ={}) == logging.DEBUG
    assert log_level(verbosity="error", verbose=2, environ=env) == logging.ERROR
    assert log_level(quiet=True, verbosity="debug", environ=env) == LEVELS["quiet"]


def test_a_bad_environment_level_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="DATAKIT_VERBOSE='loud'"):
        log_level(environ={"DATAKIT_VERBOSE": "Loud "})


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "86401", "soon", ""])
def test_seconds_refuses_what_is_not_a_usable_duration(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        seconds()(text)


def test_seconds_accepts_up_to_its_maximum() -> None:
    assert seconds()("0.5") == 0.5
    assert seconds()("86400") == 86400
    assert seconds(30 * 86400)("2592000") == 2592000
