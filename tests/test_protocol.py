"""The parent/child protocol's readers: what they return is what os.environ holds, now."""

from __future__ import annotations

import os

from reprokit._model.protocol import ChildProtocol, getenv


def test_getenv_answers_as_os_environ_does(monkeypatch):
    monkeypatch.setenv("REPROKIT_TEST_VALUE", "é-1")
    monkeypatch.setenv("REPROKIT_TEST_EMPTY", "")
    monkeypatch.delenv("REPROKIT_TEST_UNSET", raising=False)
    for name in ("REPROKIT_TEST_VALUE", "REPROKIT_TEST_EMPTY", "REPROKIT_TEST_UNSET", "PATH"):
        assert getenv(name) == os.environ.get(name), name
    monkeypatch.delenv("REPROKIT_TEST_VALUE")
    assert getenv("REPROKIT_TEST_VALUE") is None


def test_from_env_follows_os_environ_and_hands_out_copies(monkeypatch):
    monkeypatch.delenv("REPROKIT_SEED", raising=False)
    assert ChildProtocol.from_env().seed is None
    monkeypatch.setenv("REPROKIT_SEED", "12")
    told = ChildProtocol.from_env()
    assert told.seed == 12
    told.seed = 99  # the caller's copy
    assert ChildProtocol.from_env().seed == 12
    monkeypatch.setenv("REPROKIT_SEED", "13")
    assert ChildProtocol.from_env().seed == 13
