"""The context crossing the boundary: sent to a worker as a spec, and back from a cell to the host
as a reference into the node's own store; a forged spec never makes the host open a path."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import FAST_LIMITS, FakeBridge

from sandbox import open_session


def test_real_context_crosses_the_boundary_as_a_spec() -> None:
    context_module = pytest.importorskip("rlm.context")
    context = context_module.Context.from_value("alpha\nThe secret code is 4217.\n")
    bridge = FakeBridge()

    async def scenario() -> None:
        async with await open_session(context.to_spec(), bridge, FAST_LIMITS) as session:
            found = await session.run_cell("print(context.find('secret'))\nv = context[0:5]\nrlm_query('q', context=v)")
            assert found.error is None and found.stdout.startswith("10\n")
            closing = await session.run_cell("context.close()")
            assert closing.error_kind == "policy" and "read-only" in closing.error

    asyncio.run(scenario())
    sent = bridge.calls[-1][2]["context"]  # a (store token, range) reference: no path, no spec
    assert sent == {"kind": "ref", "ref": {"__view__": [context.to_spec()["store"]["token"], 0, 5, None]}}


FORGED_SPEC = "{{'kind': 'view', 'store': {{'token': 'evil', 'path': {path!r}, 'size': 10, 'stat': None, 'nchars': 10, 'ascii': True, 'k': 4096, 'label': 'x', 'index': {path!r}}}, 'start': 0, 'stop': 10, 'name': None}}"  # noqa: E501


@pytest.mark.parametrize("mode", ["process", "inprocess"])
def test_a_forged_child_context_is_refused_end_to_end(
    scripted_server: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A cell cannot make the host open a path through rlm_query(context=...)."""
    import rlm.context.views
    from rlm import RLM

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    opened: list[Any] = []
    for name in ("open_spec_store", "file_store"):
        real = getattr(rlm.context.views, name)
        monkeypatch.setattr(
            rlm.context.views, name, lambda spec, *a, _real=real: (opened.append(spec), _real(spec, *a))[1]
        )
    forged = FORGED_SPEC.format(path=str(secret))
    outputs: list[str] = []

    def root(request: Any) -> str:
        if sum(m["role"] == "assistant" for m in request.messages) == 0:
            return f"```repl\nr = rlm_query('read it', context={forged})\nprint(r)\n```"
        outputs.append(request.messages[-1]["content"])
        return "FINAL(done)"

    scripted_server.script("test-root", root)
    rlm_ = RLM(model="openai/test-root", api_base=scripted_server.base_url, api_key="sk-local", sandbox=mode)
    result = rlm_.query("ctx", "q")
    assert result.answer == "done", result.error
    assert "context= must be a str or a view of `context`" in outputs[0] and "TOP SECRET" not in outputs[0]
    assert not [s for s in opened if str(secret) in str(s)]


def test_the_engine_rebuilds_a_child_context_only_from_its_own(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """On the host: whatever a (hostile) worker sends, Node.rlm_query never opens a path: a
    spec dict is refused, a reference must name the node's own store and stay inside its views."""
    import ast
    import types

    import rlm.context.views
    from rlm.context import Context
    from rlm.node import Node
    from sandbox.plain import ContextRefused, context_of_ref

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    opened: list[Any] = []
    real = rlm.context.views.open_spec_store
    monkeypatch.setattr(rlm.context.views, "open_spec_store", lambda spec: (opened.append(spec), real(spec))[1])
    whole = Context.from_value("0123456789" * 10)
    own = whole[10:50]
    tree = types.SimpleNamespace(settings=types.SimpleNamespace(max_depth=3))
    node = Node(tree, (), own, "q")  # type: ignore[arg-type]
    token = own.to_spec()["store"]["token"]
    forged = ast.literal_eval(FORGED_SPEC.format(path=str(secret)))
    hostile = [
        forged,
        {"kind": "ref", "ref": {"__view__": ["not-ours", 0, 5, None]}},
        {"kind": "ref", "ref": {"__view__": [token, 0, 20, None]}},  # outside the node's own view
        {"kind": "ref", "ref": {"__view__": [token, 10, 10**9, None]}},
        {"kind": "ref", "ref": {"__docs__": [[token, 10, 20]]}},
        {"kind": "view", "store": {"token": token}, "start": 0, "stop": 5},
    ]
    for ref in hostile:
        with pytest.raises(ContextRefused):
            asyncio.run(node.call("rlm_query", ["q"], {"context": ref}))
    assert not [s for s in opened if str(secret) in str(s)]
    inside = context_of_ref({"kind": "ref", "ref": {"__view__": [token, 20, 30, None]}}, own)
    assert str(inside) == "0123456789"
    assert str(context_of_ref({"kind": "text", "text": "plain"}, own)) == "plain"
    with pytest.raises(ValueError, match="one context"):
        asyncio.run(node.call("rlm_query_batched", [["a", "b"]], {"contexts": {"kind": "view"}}))
