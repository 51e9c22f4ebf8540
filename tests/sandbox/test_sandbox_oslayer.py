"""The OS layer on its own: cells run as plain Python (the language policy off) and must still fail to
read or write host files, open sockets, start processes or signal anyone but their own worker.

Every attack also runs with the policy on (it must fail there too), and every policy attack of
test_sandbox_attacks.py runs with the policy off: the host survives and the session keeps serving.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAST_LIMITS, FakeBridge, Repl
from test_sandbox_attacks import ATTACKS

from sandbox import open_session
from sandbox.oslayer import LAYERS

PROBE = Path("/tmp/rlm-oslayer-probe")
LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"

# (id, code, a piece of text its error or output must contain with the policy off)
OS_ATTACKS = [
    ("read-host-file", "print(open('/etc/passwd').read())", "PermissionError"),
    ("os-open", "import os\nos.open('/etc/hostname', os.O_RDONLY)", "PermissionError"),
    ("write-host-file", f"open('{PROBE}', 'w').write('x')", "PermissionError"),
    ("create-file", f"import os\nos.open('{PROBE}', os.O_CREAT | os.O_WRONLY)", "PermissionError"),
    ("remove-file", "import os\nos.unlink('/etc/hostname')", "PermissionError"),
    ("rename-file", "import os\nos.rename('/etc/hostname', '/etc/hostname2')", "PermissionError"),
    ("list-directory", "import os\nos.listdir('/')", "PermissionError"),
    ("chmod", "import os\nos.chmod('/etc/hostname', 0o777)", "PermissionError"),
    ("socket-inet", "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)", "PermissionError"),
    ("socket-inet6", "import socket\nsocket.socket(socket.AF_INET6, socket.SOCK_DGRAM)", "PermissionError"),
    ("socket-unix", "import socket\nsocket.socket(socket.AF_UNIX)", "PermissionError"),
    ("socketpair", "import socket\nsocket.socketpair()", "PermissionError"),
    ("fork", "import os\nos.fork()", "PermissionError"),
    ("subprocess", "import subprocess\nsubprocess.run(['true'])", "PermissionError"),
    ("posix-spawn", "import os\nos.posix_spawn('/bin/true', ['true'], {})", "PermissionError"),
    ("execv", "import os\nos.execv('/bin/true', ['true'])", "PermissionError"),
    ("os-system", f"import os\nprint('status', os.system('touch {PROBE}'))", "status 32512"),
    ("kill-zygote", "import os, signal\nos.kill(os.getppid(), signal.SIGTERM)", "PermissionError"),
    ("kill-host", f"import os, signal\nos.kill({os.getpid()}, signal.SIGTERM)", "PermissionError"),
    ("kill-everyone", "import os\nos.kill(-1, 0)", "PermissionError"),
    ("kill-group", "import os\nos.kill(0, 0)", "PermissionError"),
    ("ptrace", LIBC + "print(libc.ptrace(16, os.getppid(), 0, 0), ctypes.get_errno())", "-1 1"),
    ("mount", LIBC + "print(libc.mount(b'none', b'/mnt', b'tmpfs', 0, None), ctypes.get_errno())", "-1 1"),
    ("unshare", LIBC + "print(libc.unshare(0x10000000), ctypes.get_errno())", "-1 1"),
    ("raise-no-new-privs", LIBC + "print(libc.prctl(38, 0, 0, 0, 0), ctypes.get_errno())", "-1 22"),
]


def _layers() -> dict[str, str]:
    async def probe() -> dict[str, str]:
        session = await open_session(None, FakeBridge(), FAST_LIMITS)
        try:
            return dict(session.os_layer)  # type: ignore[attr-defined]
        finally:
            await session.aclose()

    return asyncio.run(probe())


LAYER_STATE = _layers()
needs_seccomp = pytest.mark.skipif(
    LAYER_STATE.get("seccomp") != "on", reason=f"no seccomp filter here: {LAYER_STATE.get('seccomp')}"
)


class PlainRepl(Repl):
    """A Repl whose session runs cells with the language policy off."""

    def __init__(self, os_layer: bool = True) -> None:
        self.loop = asyncio.new_event_loop()
        self.bridge = FakeBridge()
        self.session = self.loop.run_until_complete(
            open_session(None, self.bridge, FAST_LIMITS, policy=False, os_layer=os_layer)
        )


@pytest.fixture(scope="module")
def plain() -> Iterator[Repl]:
    driver = PlainRepl()
    driver.ok("canary = 41")
    yield driver
    driver.close()


def test_every_layer_is_reported() -> None:
    assert set(LAYER_STATE) == set(LAYERS)
    assert all(state == "on" or state for state in LAYER_STATE.values())


@needs_seccomp
@pytest.mark.parametrize(("code", "needle"), [a[1:] for a in OS_ATTACKS], ids=[a[0] for a in OS_ATTACKS])
def test_os_attack_fails_without_the_policy(plain: Repl, code: str, needle: str) -> None:
    outcome = plain.run(code)
    assert needle in (outcome.error or "") + outcome.stdout, (outcome.error, outcome.stdout)
    assert "root:" not in outcome.stdout
    assert not PROBE.exists()
    assert os.path.exists("/etc/hostname") or not os.path.exists("/etc/hostname2")
    follow = plain.ok(
        "import threading\nout = []\nt = threading.Thread(target=out.append, args=(canary + 1,))\n"
        "t.start()\nt.join()\nprint(out)"
    )
    assert follow.stdout == "[42]\n"


@pytest.mark.parametrize("code", [a[1] for a in OS_ATTACKS], ids=[a[0] for a in OS_ATTACKS])
def test_os_attack_fails_with_the_policy(attacked: Repl, code: str) -> None:
    outcome = attacked.run(code)
    assert outcome.error, outcome.stdout
    assert not PROBE.exists()
    assert attacked.ok("print(canary['n'])").stdout == "41\n"


@needs_seccomp
@pytest.mark.parametrize("code", [a[1] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_policy_attack_is_contained_without_the_policy(plain: Repl, code: str) -> None:
    outcome = plain.run(code)
    assert "root:" not in outcome.stdout + (outcome.error or "")
    assert plain.ok("print('alive')").stdout == "alive\n"


def test_the_switch_reaches_plain_python() -> None:
    """Without the OS layer, a policy-off cell really is unconfined: the tests above test the OS layer."""
    driver = PlainRepl(os_layer=False)
    try:
        outcome = driver.ok("print(open('/etc/passwd').read()[:5])")
        assert outcome.stdout == "root:\n"
        assert set(driver.session.missing_layers) == {f"{name} (turned off)" for name in LAYERS}  # type: ignore[attr-defined]
    finally:
        driver.close()


@pytest.fixture(scope="module")
def attacked() -> Iterator[Repl]:
    driver = Repl("process")
    driver.ok("canary = {'n': 41}")
    yield driver
    driver.close()


def test_missing_layers_reach_the_verbose_output() -> None:
    """An in-process session has no OS layer: the run's event says so and `rlm query -v` shows it."""
    import io

    from rich.console import Console

    from rlm.progress import Progress

    async def missing() -> list[str]:
        session = await open_session(None, FakeBridge(), FAST_LIMITS, mode="inprocess")
        try:
            return session.missing_layers
        finally:
            await session.aclose()

    layers = asyncio.run(missing())
    assert layers == [f"{name} (in-process mode)" for name in LAYERS]
    shown = io.StringIO()
    with Progress(Console(file=shown, width=300), verbose=True) as progress:
        progress({"type": "sandbox_layers", "path": [], "missing": layers})
    assert "runs without these OS layers: no_new_privs (in-process mode)" in shown.getvalue()


def test_tokenizers_work_under_the_os_layer(attacked: Repl) -> None:
    """Tokenizers and text codecs are loaded in the zygote: using them in a cell opens no file."""
    outcome = attacked.ok(
        "print(count_tokens('hello world'), count_tokens('hello', encoding_name='o200k_base'))\n"
        "print(len(chunk_tokens(context, 50)) > 1)\n"
        "print('é'.encode('cp1252'), 'é'.encode('latin1'), b'\\xe9'.decode('mac_roman'))"
    )
    assert outcome.stdout == "2 1\nTrue\nb'\\xe9' b'\\xe9' È\n"
