"""Call workers: provider calls handed to worker processes, each running litellm on its own loop.

Every test compares against what the in-process path (rlm/models/provider.py) does for the same
scripted request, over real HTTP: same text, usage and errors; cancellation reaches the server as a
disconnect; a killed worker fails only its own calls; closing a run ends its calls, and the workers
end with the process that started them. Each test runs its own `asyncio.run` with its own
`CallWorkers`, since asyncio objects belong to one loop; the zygote that forks the workers, and the
workers, are shared by the process, so only the first test pays for the zygote's litellm import.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from rlm import RLM, Status
from rlm.errors import ProviderError, StreamInterrupted
from rlm.models import provider
from rlm.models.provider import Endpoint
from rlm.models.workers import CallWorkers
from rlm.scripted import Drop, Fault, Reply, ScriptedServer
from rlm.types import Completion
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[1]
MODEL = "test-w"  # what the server sees; litellm strips the "openai/" prefix
TEXT = "Streaming through a worker process keeps the one event loop free for everything else it runs."


def endpoint(server: ScriptedServer) -> Endpoint:
    return Endpoint(f"openai/{MODEL}", server.base_url, "sk-local")


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def echo(request: Any) -> str:
    return f"echo: {request.messages[-1]['content']}"


def slow_or_echo(request: Any) -> str | Reply:
    """Prompts starting with "slow" get a reply that takes 30 s to start; the others an echo at once."""
    prompt = request.messages[-1]["content"]
    return Reply("slow", ttft=30) if prompt.startswith("slow") else echo(request)


@contextlib.asynccontextmanager
async def running(count: int = 2) -> AsyncIterator[CallWorkers]:
    """Started workers, all connected (so calls really go through them), closed on the way out."""
    workers = CallWorkers(count)
    workers.start()
    try:
        assert await workers.wait_ready(60) == count
        assert workers.in_process == 0
        yield workers
    finally:
        workers.close()


def alive(pid: int) -> bool:
    """Whether a process (not necessarily our child) runs: a zombie has exited."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


async def read_all(
    call: Callable[[Endpoint, list[dict[str, Any]], Callable[[Completion], None]], AsyncIterator[str]],
    ep: Endpoint,
    messages: list[dict[str, Any]],
) -> tuple[list[str], list[Completion]]:
    """The deltas of a whole stream and every Completion its `on_done` was given."""
    done: list[Completion] = []
    deltas = [delta async for delta in call(ep, messages, done.append)]
    return deltas, done


# --- calls ---------------------------------------------------------------------------------------


def test_complete_through_workers_matches_in_process(scripted_server: ScriptedServer) -> None:
    scripted_server.script(MODEL, echo)
    ep = endpoint(scripted_server)

    async def scenario() -> tuple[Completion, Completion]:
        local = await provider.complete(ep, ask("which codes appear?"))
        async with running() as workers:
            remote = await workers.complete(ep, ask("which codes appear?"))
            assert (workers.served, workers.in_process) == (1, 0)
        return local, remote

    local, remote = asyncio.run(scenario())
    assert remote.text == local.text == "echo: which codes appear?"
    assert remote.model == local.model == ep.model
    assert remote.usage == local.usage
    assert remote.usage.completion_tokens > 0 and remote.usage.prompt_tokens > 0
    assert [r.outcome for r in scripted_server.records(MODEL)] == ["completed", "completed"]


def test_stream_through_workers_matches_in_process(scripted_server: ScriptedServer) -> None:
    scripted_server.script(MODEL, lambda request: Reply(TEXT, tps=400))  # paced: deltas cannot all merge
    ep = endpoint(scripted_server)

    async def scenario() -> tuple[tuple[list[str], list[Completion]], tuple[list[str], list[Completion]]]:
        local = await read_all(provider.stream, ep, ask("stream it"))
        async with running() as workers:
            remote = await read_all(workers.stream, ep, ask("stream it"))
            assert (workers.served, workers.in_process) == (1, 0)
        return local, remote

    (local_deltas, local_done), (deltas, done) = asyncio.run(scenario())
    assert "".join(deltas) == "".join(local_deltas) == TEXT
    assert len(deltas) > 3
    assert len(done) == len(local_done) == 1
    assert done[0].text == TEXT
    assert done[0].usage == local_done[0].usage
    assert done[0].usage.completion_tokens > 0


# --- errors --------------------------------------------------------------------------------------


async def failure(
    workers: CallWorkers | None, ep: Endpoint, kind: str
) -> tuple[ProviderError | None, list[str], list[Completion]]:
    """The error one call raised (None if none), the deltas that came before it and what on_done got;
    through `workers`, or in-process when None."""
    deltas: list[str] = []
    done: list[Completion] = []
    try:
        if kind == "complete":
            await (workers.complete if workers else provider.complete)(ep, ask("fail"))
        else:
            async for delta in (workers.stream if workers else provider.stream)(ep, ask("fail"), done.append):
                deltas.append(delta)
    except ProviderError as error:
        return error, deltas, done
    return None, deltas, done


def described(error: ProviderError | None) -> dict[str, Any]:
    assert error is not None, "the call should have failed"
    return {
        "type": type(error),
        "message": str(error),
        "model": error.model,
        "status_code": error.status_code,
        "transient": error.transient,
        "retry_after": error.retry_after,
        "partial_text": getattr(error, "partial_text", None),
    }


@pytest.mark.parametrize(
    ("kind", "action", "expected"),
    [
        ("complete", Fault(429, "slow down", retry_after=7), {"status_code": 429, "transient": True, "retry_after": 7}),
        ("complete", Fault(400, "bad request"), {"status_code": 400, "transient": False, "retry_after": None}),
        ("stream", Fault(503, "overloaded"), {"status_code": 503, "transient": True, "type": ProviderError}),
        (
            "stream",
            Drop(TEXT, after_chars=30),
            {"type": StreamInterrupted, "transient": True, "partial_text": TEXT[:30]},
        ),
    ],
    ids=["complete-429", "complete-400", "stream-503", "stream-dropped"],
)
def test_errors_cross_the_process_boundary_intact(
    scripted_server: ScriptedServer, kind: str, action: Fault | Drop, expected: dict[str, Any]
) -> None:
    scripted_server.script(MODEL, lambda request: action)
    ep = endpoint(scripted_server)

    async def scenario() -> tuple[Any, Any]:
        local = await failure(None, ep, kind)
        async with running() as workers:
            remote = await failure(workers, ep, kind)
        return local, remote

    (local_error, local_deltas, local_done), (error, deltas, done) = asyncio.run(scenario())
    remote = described(error)
    assert remote == described(local_error)
    assert {key: remote[key] for key in expected} == expected
    assert "".join(deltas) == "".join(local_deltas)
    # on_done is the accounting hook: called as often, with the same text, as in-process
    assert [c.text for c in done] == [c.text for c in local_done]


# --- cancellation --------------------------------------------------------------------------------


def test_cancelling_a_complete_closes_its_request(scripted_server: ScriptedServer) -> None:
    scripted_server.script(MODEL, [Reply("too late", ttft=30), "echo after"])
    ep = endpoint(scripted_server)

    async def scenario() -> None:
        async with running() as workers:
            call = asyncio.create_task(workers.complete(ep, ask("slow")))
            assert await eventually(lambda: len(scripted_server.records(MODEL)) == 1)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert await eventually(lambda: scripted_server.records(MODEL)[0].outcome != "in_progress")
            assert scripted_server.records(MODEL)[0].outcome == "disconnected"
            # the workers still answer
            assert (await workers.complete(ep, ask("next"))).text == "echo after"

    asyncio.run(scenario())


def test_closing_a_stream_early_closes_its_request(scripted_server: ScriptedServer) -> None:
    long = TEXT * 10
    scripted_server.script(MODEL, [Reply(long, tps=20), "echo after"])
    ep = endpoint(scripted_server)

    async def scenario() -> None:
        async with running() as workers:
            done: list[Completion] = []
            deltas = workers.stream(ep, ask("slow stream"), done.append)
            first = await anext(deltas)
            await deltas.aclose()
            assert len(done) == 1, "on_done is called once when the consumer stops early"
            assert done[0].text.startswith(first) and long.startswith(done[0].text)
            assert len(done[0].text) < len(long)
            assert done[0].usage.completion_tokens > 0
            assert await eventually(lambda: scripted_server.records(MODEL)[0].outcome != "in_progress")
            record = scripted_server.records(MODEL)[0]
            assert record.outcome == "disconnected"
            assert len(record.sent_text) < len(long)
            assert (await workers.complete(ep, ask("next"))).text == "echo after"

    asyncio.run(scenario())


# --- a worker dies -------------------------------------------------------------------------------


def test_a_killed_worker_fails_its_calls_and_the_others_go_on(scripted_server: ScriptedServer) -> None:
    scripted_server.script(MODEL, slow_or_echo)
    ep = endpoint(scripted_server)

    async def scenario() -> None:
        async with running(2) as workers:
            pids = list(workers.pids)
            assert len(pids) == 2
            # one slow call per worker (however calls are spread, some land on the worker killed)
            slow = [asyncio.create_task(workers.complete(ep, ask(f"slow {i}"))) for i in range(4)]
            assert await eventually(lambda: len(scripted_server.records(MODEL)) == 4)
            os.kill(pids[0], signal.SIGKILL)
            await asyncio.wait(slow, timeout=20, return_when=asyncio.FIRST_COMPLETED)
            failed = [t for t in slow if t.done()]
            assert failed, "a call pending on a killed worker must fail, not hang"
            for task in failed:
                error = task.exception()
                assert isinstance(error, ProviderError) and error.transient, error
                assert "worker" in str(error) and str(pids[0]) in str(error), str(error)
            assert await eventually(lambda: workers.pids == [pids[1]])
            served = workers.served
            replies = await asyncio.gather(*(workers.complete(ep, ask(f"next {i}")) for i in range(3)))
            assert [r.text for r in replies] == [f"echo: next {i}" for i in range(3)]
            assert workers.served == served + 3  # the survivor answered, not the in-process path
            assert workers.in_process == 0
            for task in slow:
                task.cancel()
            await asyncio.gather(*slow, return_exceptions=True)

    asyncio.run(scenario())


def test_with_every_worker_dead_calls_run_in_process(scripted_server: ScriptedServer) -> None:
    scripted_server.script(MODEL, [Reply("slow", ttft=30), "echo after"])
    ep = endpoint(scripted_server)

    async def scenario() -> None:
        async with running(1) as workers:
            (pid,) = workers.pids
            call = asyncio.create_task(workers.complete(ep, ask("slow")))
            assert await eventually(lambda: len(scripted_server.records(MODEL)) == 1)
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(ProviderError) as caught:
                await asyncio.wait_for(call, 20)
            assert caught.value.transient
            assert "worker" in str(caught.value) and str(pid) in str(caught.value), str(caught.value)
            assert (await workers.complete(ep, ask("next"))).text == "echo after"
            assert workers.in_process == 1 and workers.pids == []

    asyncio.run(scenario())


def test_closing_cancels_the_runs_calls_and_the_workers_serve_the_next_run(scripted_server: ScriptedServer) -> None:
    """Workers outlive a run (warm clients and connections); `close()` ends only that run's channel."""
    scripted_server.script(MODEL, slow_or_echo)
    ep = endpoint(scripted_server)

    async def scenario() -> None:
        async with running(2) as workers:
            pids = sorted(workers.pids)
            pending = asyncio.create_task(workers.complete(ep, ask("slow")))
            assert await eventually(lambda: len(scripted_server.records(MODEL)) == 1)
        # whatever the pending call raises now, it must not hang (wait_for fails the test if it does)
        await asyncio.wait_for(asyncio.gather(pending, return_exceptions=True), 20)
        assert await eventually(lambda: scripted_server.records(MODEL)[0].outcome != "in_progress")
        assert scripted_server.records(MODEL)[0].outcome == "disconnected"
        async with running(2) as again:
            assert sorted(again.pids) == pids
            assert (await again.complete(ep, ask("next"))).text == "echo: next"

    asyncio.run(scenario())


HOST = """
import asyncio, os, signal, sys
from rlm.models.workers import CallWorkers

async def main():
    workers = CallWorkers(2)
    workers.start()
    assert await workers.wait_ready(60) == 2
    zygotes = {open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1] for pid in workers.pids}
    print(*workers.pids, *zygotes, flush=True)
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@pytest.mark.parametrize("end", ["exit", "kill"])
def test_workers_and_zygote_exit_with_the_host_process(end: str) -> None:
    """No orphans: when the process that started them exits, or is killed, its workers and their zygote go too."""
    host = subprocess.run(
        [sys.executable, "-c", HOST, end], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )
    assert host.returncode == (-signal.SIGKILL if end == "kill" else 0), host.stderr
    pids = [int(pid) for pid in host.stdout.split()]
    assert len(pids) == 3, host.stdout  # two workers, one zygote

    async def gone() -> bool:
        return await eventually(lambda: not any(alive(pid) for pid in pids))

    assert asyncio.run(gone()), [pid for pid in pids if alive(pid)]


NO_ZYGOTE = """
import asyncio, sys
from rlm.models import workers
from rlm.models.provider import Endpoint

workers.zygote_command = lambda: [sys.executable, "-c", "raise SystemExit(3)"]  # a zygote that cannot start

async def main():
    pool = workers.CallWorkers(2)
    pool.start()
    assert await pool.wait_ready(60) == 0
    reply = await pool.complete(Endpoint("openai/test-w", sys.argv[1], "sk-local"), [{"role": "user", "content": "hi"}])
    print(reply.text, pool.served, pool.in_process, pool.start_error, sep="|")

asyncio.run(main())
"""


def test_when_workers_cannot_start_the_run_calls_in_process_and_says_why(scripted_server: ScriptedServer) -> None:
    """In its own process, so that this process's pool stays as it is."""
    scripted_server.script(MODEL, echo)
    host = subprocess.run(
        [sys.executable, "-c", NO_ZYGOTE, scripted_server.base_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert host.returncode == 0, host.stderr
    text, served, in_process, error = host.stdout.strip().split("|")
    assert (text, served, in_process) == ("echo: hi", "0", "1")
    assert "zygote exited (code 3" in error


def test_the_cli_says_when_call_workers_could_not_start(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    """The failure is reported with the run's summary, so the run outlasts the failed start: the reply
    takes 3 s, a generous bound for a fork server that exits at once."""
    scripted_server.script("test-root", [Reply("FINAL(42)", ttft=3)])
    context = tmp_path / "context.txt"
    context.write_text("some text")
    cli = (
        "import sys; from rlm.models import workers; "
        "workers.zygote_command = lambda: [sys.executable, '-c', 'raise SystemExit(3)']; "
        "from rlm.cli import main; main(sys.argv[1:])"
    )
    args = ["query", "--context", str(context), "--model", "openai/test-root", "--api-base", scripted_server.base_url]
    args += ["--api-key", "sk-local", "--no-cache", "--call-workers", "2", "q"]
    run = subprocess.run(
        [sys.executable, "-c", cli, *args], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "42"
    assert "call workers could not start" in run.stderr and "code 3" in run.stderr


# --- end to end ----------------------------------------------------------------------------------


def test_a_run_with_call_workers_answers_and_reports_them(scripted_server: ScriptedServer) -> None:
    """A run connects its workers in the background and calls in-process until they are connected, so
    whether its first call went to a worker is a race. To make the count meaningful without timing
    anything: the process's workers are started first (they outlive a run: only a channel to each is
    opened per run, in milliseconds), and the root's first reply waits a second (ttft) on the server,
    so every later call (the sub-calls, the root's second turn) finds them connected. Only the root's
    first call may have run in-process."""

    async def warm() -> None:
        async with running(2):
            pass

    asyncio.run(warm())
    prompts = [f"item {i}" for i in range(6)]
    cell = f"```repl\nparts = llm_query_batched({prompts!r})\nprint(parts)\n```"
    scripted_server.script("test-root", [Reply(cell, ttft=1.0), '```repl\nFINAL(", ".join(parts))\n```'])
    scripted_server.script("test-sub", lambda request: request.messages[-1]["content"].upper())
    rlm = RLM(
        model="openai/test-root",
        sub_model="openai/test-sub",
        api_base=scripted_server.base_url,
        api_key="sk-local",
        call_workers=2,
        transport="litellm",  # call workers make litellm's calls; "auto" would serve openai/ here natively
    )
    result = rlm.query("ctx", "q")
    assert result.status is Status.COMPLETED, result.error
    assert result.answer == ", ".join(p.upper() for p in prompts)
    calls = len(scripted_server.records())
    assert calls == 2 + len(prompts)
    (report,) = [e for e in result.trajectory if e["type"] == "call_workers"]
    assert report["workers"] == 2
    assert report["served"] + report["in_process"] == calls
    assert report["in_process"] <= 1 and report["served"] >= calls - 1
