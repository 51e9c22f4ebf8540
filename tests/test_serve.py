"""`rlm serve` as clients use it: the real `openai` client (sync, async, streaming) and raw HTTP, against
the server running in this process on a free port, with the scripted models behind it."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from rlm import RLM
from rlm.errors import ConfigError
from rlm.scripted import Reply, ScriptedServer
from rlm.serve import BackgroundServer, ServeOptions, check_exposure, is_loopback
from tests.waiting import wait_until

ROOT, SUB = "openai/test-root", "openai/test-sub"
ROOT_NAME, SUB_NAME = "test-root", "test-sub"  # as the scripted server knows them
ECHO_CONTEXT = '```repl\nanswer["content"] = str(context)\nanswer["ready"] = True\n```'  # documents: "\n\n" between
SLOW_FAN_OUT = '```repl\nparts = llm_query_batched(["a", "b", "c"])\nprint(parts)\n```'


def _engine(server: ScriptedServer, **options: object) -> RLM:
    return RLM(model=ROOT, sub_model=SUB, api_base=server.base_url, api_key="sk-local", **options)


@pytest.fixture
def serve(scripted_server: ScriptedServer) -> Iterator[Callable[..., BackgroundServer]]:
    """Start an `rlm serve` in this process: serve(serve_options..., engine=dict of engine options)."""
    started: list[BackgroundServer] = []

    def start(engine: dict[str, object] | None = None, **options: object) -> BackgroundServer:
        server = BackgroundServer(_engine(scripted_server, **(engine or {})), ServeOptions(**options)).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)


def _client(server: BackgroundServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def _post(server: BackgroundServer, body: object, **kwargs: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.base_url}/chat/completions", content=content, timeout=60, **kwargs)


def _ask(question: str = "q", **extra: object) -> dict[str, object]:
    return {"model": "rlm", "messages": [{"role": "user", "content": question}], **extra}


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["type"] and error["message"]
    return error["message"]


# -- the openai client ---------------------------------------------------------------------------


def test_sync_client_gets_the_answer_with_tree_wide_usage_and_cost(scripted_server: ScriptedServer, serve) -> None:
    scripted_server.script(ROOT_NAME, ['```repl\nx = llm_query("hi")\nprint(x)\n```', "FINAL(done)"])
    scripted_server.script(SUB_NAME, ["sub answer"])
    server = serve()
    completion = _client(server).chat.completions.create(model="rlm", messages=[{"role": "user", "content": "q"}])
    assert completion.choices[0].message.content == "done"
    assert completion.choices[0].finish_reason == "stop"
    assert len(scripted_server.records()) == 3  # two root turns and one sub-call, all in the reported usage
    extension = completion.model_extra["rlm"]
    assert extension["status"] == "completed" and extension["sub_calls"] == 1 and extension["iterations"] == 2
    assert set(extension["usage_by_model"]) == {ROOT, SUB}
    assert completion.usage.total_tokens == sum(
        u["prompt_tokens"] + u["completion_tokens"] for u in extension["usage_by_model"].values()
    )
    assert "cost_usd" in extension


def test_async_client_runs_requests_concurrently_and_each_sees_only_its_own_context(
    scripted_server: ScriptedServer, serve
) -> None:
    scripted_server.script(ROOT_NAME, lambda request: ECHO_CONTEXT)
    server = serve()

    async def scenario() -> list[str]:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        asks = [
            client.chat.completions.create(
                model="rlm",
                messages=[{"role": "system", "content": f"document {i}"}, {"role": "user", "content": "echo"}],
            )
            for i in range(6)
        ]
        done = await asyncio.gather(*asks)
        await client.close()
        return [c.choices[0].message.content for c in done]

    assert asyncio.run(scenario()) == [f"document {i}" for i in range(6)]


def test_streaming_sends_progress_as_reasoning_then_answer_then_usage(scripted_server: ScriptedServer, serve) -> None:
    scripted_server.script(ROOT_NAME, ['```repl\nx = llm_query("hi")\nprint(x)\n```', "FINAL(streamed)"])
    scripted_server.script(SUB_NAME, ["sub answer"])
    server = serve()
    chunks = list(
        _client(server).chat.completions.create(model="rlm", messages=[{"role": "user", "content": "q"}], stream=True)
    )
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content", "") for c in chunks if c.choices
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "turn 1" in reasoning and "running code" in reasoning and "sub-call to openai/test-sub" in reasoning
    assert content == "streamed"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert chunks[-1].model_extra["rlm"]["status"] == "completed"


def test_models_lists_the_served_names_and_the_root_model_name_works(scripted_server: ScriptedServer, serve) -> None:
    scripted_server.script(ROOT_NAME, ["FINAL(ok)"])
    server = serve()
    client = _client(server)
    assert [m.id for m in client.models.list()] == ["rlm", f"rlm/{ROOT}"]
    completion = client.chat.completions.create(model=f"rlm/{ROOT}", messages=[{"role": "user", "content": "q"}])
    assert completion.choices[0].message.content == "ok" and completion.model == f"rlm/{ROOT}"


# -- context -------------------------------------------------------------------------------------


def test_context_files_under_a_root_and_uploaded_files_become_documents(
    scripted_server: ScriptedServer, serve, tmp_path: Path
) -> None:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.txt").write_text("beta")
    scripted_server.script(ROOT_NAME, lambda request: ECHO_CONTEXT)
    server = serve(context_roots=[root])
    client = _client(server)
    uploaded = client.files.create(file=("notes.txt", b"gamma"), purpose="user_data")
    assert uploaded.filename == "notes.txt" and uploaded.bytes == 5
    completion = client.chat.completions.create(
        model="rlm",
        messages=[{"role": "user", "content": "echo"}],
        extra_body={"rlm": {"context_files": ["a.txt", str(root / "sub" / "b.txt")], "file_ids": [uploaded.id]}},
    )
    assert completion.choices[0].message.content == "alpha\n\nbeta\n\ngamma"
    client.files.delete(uploaded.id)
    missing = _post(server, _ask(rlm={"file_ids": [uploaded.id]}))
    _error(missing, 404, "file_not_found")


def test_paths_outside_the_roots_are_refused_symlinks_included(
    scripted_server: ScriptedServer, serve, tmp_path: Path
) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    (root / "link.txt").symlink_to(secret)
    server = serve(context_roots=[root])
    for name in ["../secret.txt", str(secret), "link.txt", "/etc/passwd"]:
        _error(_post(server, _ask(rlm={"context_files": [name]})), 403, "path_outside_roots")
    _error(_post(server, _ask(rlm={"context_files": ["absent.txt"]})), 404, "file_not_found")
    assert scripted_server.records() == []  # refused before anything ran
    no_roots = serve()
    _error(_post(no_roots, _ask(rlm={"context_files": ["a.txt"]})), 403, "no_roots")


# -- errors, limits, auth ------------------------------------------------------------------------


def test_every_bad_request_gets_an_openai_style_error(scripted_server: ScriptedServer, serve) -> None:
    server = serve(max_body_bytes=4096)
    assert "gpt-5" in _error(_post(server, _ask(model="gpt-5")), 404, "model_not_found")
    _error(_post(server, b"{not json"), 400, "invalid_json")
    _error(_post(server, [1, 2]), 400, "invalid_json")
    _error(_post(server, {"model": "rlm", "messages": []}), 400, "missing_question")
    _error(_post(server, {"model": "rlm"}), 400, "invalid_messages")
    assistant_last = {"model": "rlm", "messages": [{"role": "assistant", "content": "hi"}]}
    _error(_post(server, assistant_last), 400, "missing_question")
    _error(_post(server, _ask("   ")), 400, "missing_question")
    _error(_post(server, _ask(rlm={"max_cost": -1})), 400, "invalid_budget")
    _error(_post(server, _ask(rlm={"temperature": 2})), 400, "invalid_extension")
    _error(_post(server, _ask("x" * 10_000)), 413, "body_too_large")
    _error(httpx.get(f"{server.base_url}/nowhere"), 404, "not_found")
    _error(httpx.get(f"{server.base_url}/chat/completions"), 405, "method_not_allowed")
    _error(httpx.get(f"{server.base_url}/models/gpt-5"), 404, "model_not_found")
    with pytest.raises(openai.NotFoundError):
        _client(server).chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "q"}])
    assert scripted_server.records() == []
    metrics = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
    assert 'rlm_serve_errors_total{status="400"} 8' in metrics and 'rlm_serve_errors_total{status="413"} 1' in metrics


def test_a_key_is_required_when_set_and_off_loopback(scripted_server: ScriptedServer, serve) -> None:
    scripted_server.script(ROOT_NAME, ["FINAL(ok)"])
    server = serve(api_key="s3cret")
    _error(_post(server, _ask()), 401, "invalid_api_key")
    _error(_post(server, _ask(), headers={"Authorization": "Bearer wrong"}), 401, "invalid_api_key")
    with pytest.raises(openai.AuthenticationError):
        _client(server, "wrong").models.list()
    assert _client(server, "s3cret").chat.completions.create(model="rlm", messages=[{"role": "user", "content": "q"}])
    assert httpx.get(f"http://127.0.0.1:{server.port}/health").json()["status"] == "ok"  # probes need no key
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with pytest.raises(ConfigError, match="RLM_SERVE_KEY"):
        check_exposure("0.0.0.0", ServeOptions())
    check_exposure("0.0.0.0", ServeOptions(api_key="k"))


def test_the_operators_caps_win_over_the_requests_limits(scripted_server: ScriptedServer, serve) -> None:
    scripted_server.script(ROOT_NAME, lambda request: "```repl\nprint(1)\n```")
    capped = serve(engine={"max_iterations": 1})
    done = _post(capped, _ask(rlm={"max_iterations": 5})).json()
    assert done["rlm"]["status"] == "max_iterations" and done["rlm"]["iterations"] == 1
    assert done["choices"][0]["finish_reason"] == "length"
    scripted_server.script(ROOT_NAME, lambda request: "```repl\nprint(1)\n```")
    uncapped = serve(engine={"max_iterations": 5})
    lowered = _post(uncapped, _ask(rlm={"max_iterations": 2})).json()
    assert lowered["rlm"]["status"] == "max_iterations" and lowered["rlm"]["iterations"] == 2
    calls = _post(uncapped, _ask(rlm={"max_calls": 1})).json()
    assert calls["rlm"]["status"] == "max_calls"


def test_every_run_has_a_wall_time_limit_even_when_the_operator_set_none(
    scripted_server: ScriptedServer, serve
) -> None:
    scripted_server.script(ROOT_NAME, lambda request: Reply("FINAL(late)", ttft=60))
    server = serve(default_timeout_s=0.5)
    for asked in ({}, {"timeout": 1000}):  # a request cannot lift the server's limit
        done = _post(server, _ask(rlm=asked)).json()
        assert done["rlm"]["status"] == "timeout" and done["choices"][0]["finish_reason"] == "length"
    assert wait_until(lambda: all(r.outcome == "disconnected" for r in scripted_server.records(ROOT_NAME)))
    scripted_server.script(ROOT_NAME, ["FINAL(in time)"])
    operator = serve(engine={"timeout": 30}, default_timeout_s=0.5)  # the operator's --timeout wins
    assert operator.service.engine.settings.limits.timeout == 30
    assert _post(operator, _ask()).json()["choices"][0]["message"]["content"] == "in time"


def test_uploads_expire_and_their_total_size_is_capped(scripted_server: ScriptedServer, serve) -> None:
    full = _client(serve(max_upload_bytes=10))
    assert full.files.create(file=("a.txt", b"12345678"), purpose="user_data").expires_at
    with pytest.raises(openai.RateLimitError, match="at most 10 bytes of uploads"):
        full.files.create(file=("b.txt", b"12345"), purpose="user_data")
    server = serve(max_upload_bytes=10, upload_ttl_s=0.3)
    client = _client(server)
    first = client.files.create(file=("a.txt", b"12345678"), purpose="user_data")
    assert first.expires_at is not None and first.expires_at >= first.created_at
    # expired uploads are dropped by the server's sweep, freeing their room
    assert wait_until(lambda: not server.service.uploads)
    assert [f.id for f in client.files.list()] == []
    _error(_post(server, _ask(rlm={"file_ids": [first.id]})), 404, "file_not_found")
    assert client.files.create(file=("b.txt", b"12345"), purpose="user_data").bytes == 5
    with pytest.raises(ConfigError, match="--upload-ttl"):
        check_exposure("127.0.0.1", ServeOptions(upload_ttl_s=0))


def test_bad_uploads_get_openai_style_errors(scripted_server: ScriptedServer, serve) -> None:
    server = serve(max_files=1)
    files = f"{server.base_url}/files"
    _error(httpx.post(files, json={"file": "x"}), 400, "invalid_upload")
    _error(httpx.post(files, files={"other": ("a.txt", b"a")}), 400, "invalid_upload")
    assert httpx.post(files, files={"file": ("a.txt", b"a")}).status_code == 200
    _error(httpx.post(files, files={"file": ("b.txt", b"b")}), 429, "too_many_files")
    _error(httpx.get(f"{files}/file-absent"), 404, "file_not_found")
    _error(httpx.delete(f"{files}/file-absent"), 404, "file_not_found")


def test_runs_beyond_the_concurrency_limit_are_turned_away(scripted_server: ScriptedServer, serve) -> None:
    scripted_server.script(ROOT_NAME, [Reply("FINAL(slow)", ttft=3)])
    server = serve(max_concurrent=1)

    async def scenario() -> tuple[int, httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            first = asyncio.ensure_future(client.post(f"{server.base_url}/chat/completions", json=_ask()))
            while not scripted_server.records(ROOT_NAME):
                await asyncio.sleep(0.02)
            second = await client.post(f"{server.base_url}/chat/completions", json=_ask())
            return (await first).status_code, second

    first_status, second = asyncio.run(scenario())
    assert first_status == 200
    _error(second, 503, "server_busy")
    assert second.headers["Retry-After"]


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_cancels_its_run_across_the_tree(
    scripted_server: ScriptedServer, serve, stream: bool
) -> None:
    scripted_server.script(ROOT_NAME, [SLOW_FAN_OUT])
    scripted_server.script(SUB_NAME, lambda request: Reply("slow", ttft=60))
    server = serve()
    body = json.dumps(_ask(stream=stream)).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(request)
        assert wait_until(lambda: len(scripted_server.records(SUB_NAME)) == 3)
        assert all(r.outcome == "in_progress" for r in scripted_server.records(SUB_NAME))
    # the sub-calls in flight are closed at the scripted server, long before their 60 s reply
    assert wait_until(lambda: all(r.outcome == "disconnected" for r in scripted_server.records(SUB_NAME)))
    metrics = lambda: httpx.get(f"http://127.0.0.1:{server.port}/metrics").text  # noqa: E731
    assert wait_until(lambda: 'rlm_serve_runs_total{status="disconnected"} 1' in metrics())
    assert "rlm_serve_runs_in_flight 0" in metrics()


def test_metrics_count_runs_calls_tokens_and_cost(scripted_server: ScriptedServer, serve) -> None:
    scripted_server.script(ROOT_NAME, ["FINAL(one)", "FINAL(two)"])
    server = serve()
    for _ in range(2):
        assert _post(server, _ask()).status_code == 200
    text = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
    assert 'rlm_serve_runs_total{status="completed"} 2' in text
    assert "rlm_serve_model_calls_total 2" in text
    assert 'rlm_serve_tokens_total{kind="prompt"}' in text and "rlm_serve_cost_usd_total" in text


def test_the_cli_refuses_to_listen_off_loopback_without_a_key(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    env["RLM_CONFIG"] = str(tmp_path / "absent.toml")
    done = subprocess.run(
        [sys.executable, "-m", "rlm", "serve", "--host", "0.0.0.0", "--model", ROOT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1 and "RLM_SERVE_KEY" in done.stderr


def test_rlm_serve_as_a_process_answers_the_openai_client_and_stops_on_ctrl_c(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    import re
    import signal
    import subprocess
    import sys

    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.txt").write_text("from disk")
    scripted_server.script(ROOT_NAME, lambda request: ECHO_CONTEXT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    env["RLM_CONFIG"] = str(tmp_path / "absent.toml")
    env["RLM_SERVE_KEY"] = "s3cret"
    command = [sys.executable, "-m", "rlm", "serve", "--port", "0", "--context-root", str(root)]
    command += ["--model", ROOT, "--api-base", scripted_server.base_url, "--api-key", "sk-local"]
    process = subprocess.Popen([*command], stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        announced = process.stderr.readline()
        url = re.search(r"(http://\S+/v1)", announced)
        assert url, announced
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url.group(1), api_key="wrong", max_retries=0).models.list()
        client = openai.OpenAI(base_url=url.group(1), api_key="s3cret", max_retries=0)
        completion = client.chat.completions.create(
            model="rlm",
            messages=[{"role": "user", "content": "echo"}],
            extra_body={"rlm": {"context_files": ["a.txt"]}},
        )
        assert completion.choices[0].message.content == "from disk"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "rlm serve: stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
