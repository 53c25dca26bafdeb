"""The per-request log context: what a block binds, what it leaves behind, what tasks inherit."""

from __future__ import annotations

import asyncio

import structlog
from structlog.testing import capture_logs

from bootstrap import log_context


def test_a_block_binds_and_restores() -> None:
    """Nested blocks add to what is bound; each end puts back exactly what was there, including
    keys bound inside the block with bind(), which end with it."""
    assert log_context.current() == {}
    with log_context.bound(request_id="r1", peer="10.0.0.1:5684"):
        with log_context.bound(peer="10.0.0.2:5684", service="LWM2M"):
            log_context.bind(endpoint="dev-1")
            assert log_context.current() == {
                "request_id": "r1",
                "peer": "10.0.0.2:5684",
                "service": "LWM2M",
                "endpoint": "dev-1",
            }
        assert log_context.current() == {"request_id": "r1", "peer": "10.0.0.1:5684"}
    assert log_context.current() == {}


def test_a_block_restores_when_it_raises() -> None:
    try:
        with log_context.bound(request_id="r2"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert log_context.current() == {}


def test_log_lines_carry_the_context_and_their_own_keys_win() -> None:
    log = structlog.get_logger("test")
    with capture_logs(processors=[log_context.merge]) as logs, log_context.bound(request_id="r3", peer="p"):
        log.warning("one", peer="given")
        log.warning("two")
    log.warning("three")
    assert [(e["event"], e.get("request_id"), e.get("peer")) for e in logs] == [
        ("one", "r3", "given"),
        ("two", "r3", "p"),
    ]


async def test_tasks_inherit_the_context_and_keep_their_bindings_to_themselves() -> None:
    """A task started inside a request's block logs with that request's keys; what it binds does not
    reach the request, and two requests in flight at once do not see each other's keys."""
    seen: dict[str, dict[str, object]] = {}
    started = asyncio.Event()

    async def request(name: str) -> None:
        with log_context.bound(request_id=name):
            await started.wait()
            log_context.bind(endpoint=f"dev-{name}")
            await asyncio.sleep(0)

            async def child() -> None:
                log_context.bind(child=True)
                seen[f"{name}-child"] = dict(log_context.current())

            await asyncio.create_task(child())
            seen[name] = dict(log_context.current())

    tasks = [asyncio.create_task(request(name)) for name in ("a", "b")]
    await asyncio.sleep(0)
    started.set()
    await asyncio.gather(*tasks)
    assert seen["a"] == {"request_id": "a", "endpoint": "dev-a"}
    assert seen["b"] == {"request_id": "b", "endpoint": "dev-b"}
    assert seen["a-child"] == {"request_id": "a", "endpoint": "dev-a", "child": True}
    assert log_context.current() == {}
