"""Which event loop the processes run (bootstrap.event_loop)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bootstrap import event_loop
from bootstrap.errors import ConfigError


def _run_in_a_fresh_process(choice: str | None) -> str:
    """What ``event_loop.run`` runs on (in a child, away from the test session's own loop)."""
    env = {k: v for k, v in os.environ.items() if k != event_loop.ENVIRONMENT_VARIABLE}
    if choice is not None:
        env[event_loop.ENVIRONMENT_VARIABLE] = choice
    code = (
        "import asyncio\nfrom bootstrap import event_loop\n"
        "async def which():\n    return event_loop.implementation()\n"
        "print(event_loop.run(which()))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_uvloop_by_default() -> None:
    # uvloop is a dependency on Linux (pyproject.toml), so the default is uvloop here.
    assert _run_in_a_fresh_process(None) == "uvloop"


def test_asyncio_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(event_loop.ENVIRONMENT_VARIABLE, "asyncio")
    assert event_loop.loop_factory() is None
    assert _run_in_a_fresh_process("asyncio") == "asyncio"


def test_unknown_choice_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(event_loop.ENVIRONMENT_VARIABLE, "trio")
    with pytest.raises(ConfigError, match="must be one of auto, uvloop, asyncio"):
        event_loop.loop_factory()


def test_insisting_on_a_missing_uvloop_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import fails as if not installed
    monkeypatch.setenv(event_loop.ENVIRONMENT_VARIABLE, "uvloop")
    with pytest.raises(ConfigError, match="not installed"):
        event_loop.loop_factory()
    monkeypatch.setenv(event_loop.ENVIRONMENT_VARIABLE, "auto")
    assert event_loop.loop_factory() is None, "auto falls back to asyncio's loop"
