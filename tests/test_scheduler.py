"""The scheduler and the gateway path through it, against the scripted server over real HTTP.

No speed asserts: orderings, counts and server timestamps relative to each other, with margins.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from rlm.budget import Budget, Limits
from rlm.errors import BudgetExceeded, ProviderError, StreamInterrupted
from rlm.events import EventLog
from rlm.models.gateway import ModelGateway, Routes
from rlm.models.provider import Endpoint
from rlm.scheduler import ModelLimits, RetryPolicy, Scheduler, TokenWindow
from rlm.scripted import Drop, Fault, Reply, ScriptedServer
from rlm.types import CallOrigin, Role, Status
from tests.leftovers import tasks_left

T = TypeVar("T")
FAST_RETRY = RetryPolicy(base_s=0.01, cap_s=0.05)
SUB = CallOrigin((), Role.SUB)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def gateway_for(
    server: ScriptedServer, *, max_in_flight: int = 8, budget: Budget | None = None, **limits: Any
) -> ModelGateway:
    sub = Endpoint("openai/sub", server.base_url, "sk-local")
    scheduler = Scheduler(default=ModelLimits(max_in_flight=max_in_flight, **limits), retry=FAST_RETRY)
    return ModelGateway(
        Routes(root=replace(sub, model="openai/root"), sub=sub),
        budget=budget or Budget(Limits()),
        scheduler=scheduler,
        events=EventLog(),
    )


def ask(gateway: ModelGateway, prompt: str, origin: CallOrigin = SUB) -> Coroutine[Any, Any, Any]:
    return gateway.complete([{"role": "user", "content": prompt}], origin)


async def streamed(gateway: ModelGateway, prompt: str, origin: CallOrigin = SUB) -> str:
    parts = [d async for d in gateway.stream([{"role": "user", "content": prompt}], origin)]
    return "".join(parts)


async def until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


# --- the scheduler alone ----------------------------------------------------------------------


def test_freed_slots_go_to_the_flow_with_fewest_in_flight() -> None:
    """A deep fan-out queued first does not starve a sibling or the parent that asks later."""

    async def main() -> list[CallOrigin]:
        scheduler = Scheduler(default=ModelLimits(max_in_flight=2))
        order: list[CallOrigin] = []
        release = asyncio.Event()

        async def call(origin: CallOrigin) -> None:
            async with scheduler.slot("m", origin):
                order.append(origin)
                await release.wait()
                await asyncio.sleep(0)

        fan_out = CallOrigin((0,), Role.SUB)
        tasks = [asyncio.create_task(call(fan_out)) for _ in range(12)]
        await until(lambda: scheduler.waiting("m") == 10)
        late = [CallOrigin((1,), Role.SUB), CallOrigin((), Role.ROOT)]
        tasks += [asyncio.create_task(call(o)) for o in late]
        await until(lambda: scheduler.waiting("m") == 12)
        release.set()
        await asyncio.gather(*tasks)
        assert scheduler.in_flight("m") == 0 and scheduler.waiting("m") == 0
        return order

    order = run(main())
    assert len(order) == 14
    late_positions = [i for i, o in enumerate(order) if o.path != (0,)]
    # both get one of the first three slots freed, ahead of 10 fan-out calls queued before them (the
    # fan-out wins a tie at zero in flight, by age)
    assert late_positions[0] == 2 and late_positions[1] <= 4


def test_fifo_within_a_flow_and_cancelled_waiters_pass_their_slot_on() -> None:
    async def main() -> None:
        scheduler = Scheduler(default=ModelLimits(max_in_flight=1))
        order: list[int] = []
        gate = asyncio.Event()

        async def call(i: int) -> None:
            async with scheduler.slot("m", SUB):
                order.append(i)
                await gate.wait()

        tasks = [asyncio.create_task(call(i)) for i in range(5)]
        await until(lambda: scheduler.waiting("m") == 4)
        tasks[2].cancel()  # cancelled while queued
        gate.set()
        tasks[1].cancel()  # may be granted and cancelled before it runs: the slot must move on
        await asyncio.gather(*tasks, return_exceptions=True)
        assert order[0] == 0 and order[-2:] == [3, 4] and 2 not in order
        assert scheduler.in_flight("m") == 0 and scheduler.waiting("m") == 0

    run(main())


def test_request_rate_holds_calls_beyond_the_limit() -> None:
    async def main() -> None:
        scheduler = Scheduler(default=ModelLimits(max_in_flight=10, rpm=3))
        sent: list[int] = []

        async def call(i: int) -> None:
            async with scheduler.slot("m", SUB):
                sent.append(i)

        tasks = [asyncio.create_task(call(i)) for i in range(5)]
        await asyncio.sleep(0.3)
        assert sent == [0, 1, 2]  # the other two wait for the minute window, in order
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert scheduler.in_flight("m") == 0

    run(main())


def test_token_window_limits_tokens_per_period() -> None:
    async def main() -> list[float]:
        window = TokenWindow(100, period=0.3)
        stamps = []
        for size in (60, 30, 50, 500):  # 500 is clipped to the whole window
            await window.acquire(size)
            stamps.append(time.monotonic())
        return stamps

    stamps = run(main())
    assert stamps[1] - stamps[0] < 0.1  # 90 of 100 tokens: no wait
    assert stamps[2] - stamps[0] >= 0.25  # 140 > 100: waits for the first entry to leave the window
    assert stamps[3] - stamps[2] >= 0.25


def test_token_estimate_is_only_computed_under_a_token_limit() -> None:
    async def main() -> int:
        counted = [0]

        def estimate() -> int:
            counted[0] += 1
            return 10

        for scheduler in (Scheduler(), Scheduler(default=ModelLimits(tpm=1000))):
            async with scheduler.slot("m", SUB, tokens=estimate):
                pass
        return counted[0]

    assert run(main()) == 1  # the unlimited scheduler never asked


def test_retry_policy() -> None:
    policy = RetryPolicy(max_attempts=3, base_s=0.1, cap_s=1.0, max_retry_after_s=10.0)
    transient = ProviderError("x", status_code=500, transient=True)
    assert all(0 <= (policy.delay(a, transient) or 0) <= 1.0 for a in (1, 2) for _ in range(50))
    assert policy.delay(3, transient) is None  # attempts used up
    assert policy.delay(1, ProviderError("bad", status_code=400)) is None  # 4xx: never retried
    told = ProviderError("slow down", status_code=429, transient=True, retry_after=2.0)
    assert all(2.0 <= (policy.delay(1, told) or 0) <= 2.2 for _ in range(50))
    assert policy.delay(1, replace_retry_after(told, 3600.0)) is None  # longer than we'd ever wait


def replace_retry_after(error: ProviderError, seconds: float) -> ProviderError:
    return ProviderError(str(error), status_code=error.status_code, transient=True, retry_after=seconds)


# --- through the gateway, over HTTP -----------------------------------------------------------


def test_429_is_retried_after_retry_after(scripted_server: ScriptedServer) -> None:
    scripted_server.script("sub", [Fault(429, retry_after=0.5), "fine"])
    completion = run(ask(gateway_for(scripted_server), "hi"))
    first, second = scripted_server.records("sub")
    assert completion.text == "fine" and first.status == 429
    assert first.finished_at is not None
    assert second.received_at - first.finished_at >= 0.45


def test_429_pauses_the_whole_model(scripted_server: ScriptedServer) -> None:
    """Other calls to the model wait out the Retry-After too instead of hammering the provider."""
    scripted_server.script("sub", lambda r: Fault(429, retry_after=0.6) if r.index == 0 else "ok")

    async def main() -> None:
        gateway = gateway_for(scripted_server)
        first = asyncio.create_task(ask(gateway, "first"))
        await until(lambda: any(r.status == 429 for r in scripted_server.records()))
        assert (await ask(gateway, "second")).text == "ok"
        await first

    run(main())
    rejected, *later = scripted_server.records("sub")
    assert rejected.finished_at is not None and len(later) == 2
    assert all(r.received_at - rejected.finished_at >= 0.5 for r in later)


def test_500_and_dropped_replies_are_retried(scripted_server: ScriptedServer) -> None:
    scripted_server.script("sub", [Fault(500), Drop("a reply cut in half", 6), "whole"])
    assert run(ask(gateway_for(scripted_server), "hi")).text == "whole"
    assert [r.outcome for r in scripted_server.records("sub")] == ["error", "dropped", "completed"]


def test_stream_dropped_before_any_text_is_retried(scripted_server: ScriptedServer) -> None:
    scripted_server.script("sub", [Fault(503), Drop("never seen", 0), "streamed whole"])
    assert run(streamed(gateway_for(scripted_server), "hi")) == "streamed whole"
    assert len(scripted_server.records("sub")) == 3


def test_stream_dropped_after_text_keeps_the_partial_text(scripted_server: ScriptedServer) -> None:
    """Retrying would repeat text the caller already has; the gateway raises with what arrived."""
    scripted_server.script("sub", [Drop("half of this reply", 7), "unused"])
    with pytest.raises(StreamInterrupted) as caught:
        run(streamed(gateway_for(scripted_server), "hi"))
    assert caught.value.partial_text == "half of"
    assert len(scripted_server.records("sub")) == 1


@pytest.mark.parametrize("status", [400, 401, 404])
def test_4xx_is_not_retried(scripted_server: ScriptedServer, status: int) -> None:
    scripted_server.script("sub", [Fault(status), "never sent"])
    with pytest.raises(ProviderError) as caught:
        run(ask(gateway_for(scripted_server), "hi"))
    assert caught.value.status_code == status and not caught.value.transient
    assert len(scripted_server.records("sub")) == 1


def test_a_failed_item_fails_alone(scripted_server: ScriptedServer) -> None:
    from rlm.bridge import gather_items

    scripted_server.script("sub", lambda r: Fault(400, "bad item") if "3" in r.messages[-1]["content"] else "ok")

    async def main() -> list[str]:
        gateway = gateway_for(scripted_server, max_in_flight=2)
        return await gather_items(_text(ask(gateway, f"item {i}")) for i in range(6))

    results = run(main())
    assert results[:3] == ["ok"] * 3 and results[4:] == ["ok"] * 2
    assert results[3].startswith("Error: ") and "bad item" in results[3]


async def _text(call: Coroutine[Any, Any, Any]) -> str:
    return (await call).text


def test_cancellation_leaves_nothing_running(scripted_server: ScriptedServer) -> None:
    """Cancel calls in flight and queued ones: every connection closes, no task or slot is left."""
    scripted_server.script("sub", lambda r: Reply("slow reply", ttft=30.0))

    async def main() -> None:
        gateway = gateway_for(scripted_server, max_in_flight=4)
        calls = [asyncio.create_task(ask(gateway, f"c{i}")) for i in range(4)]
        calls += [asyncio.create_task(streamed(gateway, f"s{i}")) for i in range(4)]
        await until(lambda: len(scripted_server.records("sub")) == 4)
        assert gateway.scheduler.waiting("openai/sub") == 4
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        assert not tasks_left()
        assert gateway.scheduler.in_flight("openai/sub") == 0 and gateway.scheduler.waiting("openai/sub") == 0
        await until(lambda: all(r.outcome == "disconnected" for r in scripted_server.records("sub")), 5.0)
        await asyncio.sleep(0.2)

    run(main())
    assert len(scripted_server.records("sub")) == 4  # the queued calls were never sent


def test_a_cancelled_stream_closes_its_connection(scripted_server: ScriptedServer) -> None:
    scripted_server.script("sub", [Reply("word " * 200, tps=50.0)])

    async def main() -> None:
        gateway = gateway_for(scripted_server)
        stream = gateway.stream([{"role": "user", "content": "hi"}], SUB)
        async for _ in stream:
            break
        await stream.aclose()
        assert gateway.scheduler.in_flight("openai/sub") == 0
        await until(lambda: scripted_server.records("sub")[0].outcome == "disconnected", 5.0)
        assert not tasks_left()

    run(main())


def test_budget_refuses_calls_queued_behind_the_limit(scripted_server: ScriptedServer) -> None:
    """The budget is checked when a call gets its slot, so a big batch queued before the limit was
    reached does not go out after it."""
    scripted_server.script("sub", lambda r: Reply("ok", ttft=0.05))
    budget = Budget(Limits(max_calls=3))

    async def main() -> list[Any]:
        gateway = gateway_for(scripted_server, max_in_flight=2, budget=budget)
        return await asyncio.gather(*(ask(gateway, f"q{i}") for i in range(12)), return_exceptions=True)

    results = run(main())
    sent = len(scripted_server.records("sub"))
    assert sent <= 3 + 1  # at most one call per other slot was already on the wire
    assert sum(isinstance(r, BudgetExceeded) for r in results) == 12 - sent
    assert budget.tripped is not None and budget.tripped.status is Status.MAX_CALLS


def test_max_calls_counts_calls_in_flight(scripted_server: ScriptedServer) -> None:
    """A call is reserved when it is sent, so a batch wider than the limit sends exactly the limit."""
    scripted_server.script("sub", lambda r: Reply("ok", ttft=0.05))
    budget = Budget(Limits(max_calls=5))

    async def main() -> list[Any]:
        gateway = gateway_for(scripted_server, max_in_flight=64, budget=budget)
        return await asyncio.gather(*(ask(gateway, f"q{i}") for i in range(64)), return_exceptions=True)

    results = run(main())
    assert len(scripted_server.records("sub")) == 5
    assert sum(not isinstance(r, BaseException) for r in results) == 5
    assert sum(isinstance(r, BudgetExceeded) for r in results) == 59
    assert budget.spent.calls == 5 and budget.reserved == 0


def test_failed_calls_give_their_reservation_back(scripted_server: ScriptedServer) -> None:
    """A call that fails is not counted; streamed and cached calls settle their reservation too."""
    scripted_server.script("sub", [Fault(400), "a", "b", "c"])
    budget = Budget(Limits(max_calls=2))

    async def main() -> list[Any]:
        gateway = gateway_for(scripted_server, budget=budget)
        out: list[Any] = []
        for prompt in ("q0", "q1", "q2", "q3"):
            try:
                out.append(await streamed(gateway, prompt) if prompt == "q1" else (await ask(gateway, prompt)).text)
            except (ProviderError, BudgetExceeded) as error:
                out.append(type(error))
        return out

    assert run(main()) == [ProviderError, "a", "b", BudgetExceeded]
    assert len(scripted_server.records("sub")) == 3
    assert budget.spent.calls == 2 and budget.reserved == 0


# --- the whole tree, through the engine -------------------------------------------------------

CHILD_CELL = '```repl\nprint(llm_query_batched(["a", "b", "c"]))\n```\n'
ROOT_CELL = '```repl\nprint(rlm_query_batched(["child 0", "child 1", "child 2", "child 3"]))\n```\n'


def tree_policy(request: Any) -> str:
    """Root: fan out to 4 children; each child: 3 sub-calls; everyone answers on its next turn."""
    if any(m["role"] == "assistant" for m in request.messages):
        return "FINAL(done)"
    return ROOT_CELL if "TOPQ" in str(request.messages) else CHILD_CELL


def query_tree(server: ScriptedServer, sub_ttft: float = 0.0, **options: Any) -> Any:
    from rlm.api import RLM

    server.script("root", tree_policy)
    server.script("sub", lambda r: Reply("s", ttft=sub_ttft))
    rlm = RLM(
        model="openai/root", sub_model="openai/sub", api_base=server.base_url, api_key="k", cache=False, **options
    )

    async def main() -> Any:
        result = await rlm.aquery("the context", "TOPQ")
        await asyncio.sleep(0.3)  # let the server record the disconnects
        assert not tasks_left()
        return result

    return run(main())


def test_no_deadlock_when_parents_wait_on_children(scripted_server: ScriptedServer) -> None:
    """One slot for the whole tree: a parent waiting for its children holds none."""
    result = query_tree(scripted_server, max_in_flight=1, max_depth=2, timeout=60)
    assert result.status is Status.COMPLETED and result.answer == "done"
    assert len(scripted_server.records("sub")) == 12


def test_budget_stops_the_whole_tree(scripted_server: ScriptedServer) -> None:
    result = query_tree(scripted_server, sub_ttft=0.2, max_calls=8, max_in_flight=4, sandbox="process")
    assert result.status is Status.MAX_CALLS
    assert len(scripted_server.records()) <= 8 + 3  # calls already on the wire when it tripped
    assert all(r.outcome != "in_progress" for r in scripted_server.records())


def test_timeout_cancels_every_descendant(scripted_server: ScriptedServer) -> None:
    result = query_tree(scripted_server, sub_ttft=30.0, timeout=4.0, sandbox="process")
    assert result.status is Status.TIMEOUT
    subs = scripted_server.records("sub")
    assert subs and all(r.outcome == "disconnected" for r in subs)
