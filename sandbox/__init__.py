"""The REPL sandbox: a persistent Python session that model-written code cannot break out of.

    repl = await open_session(context_spec, bridge, limits=CellLimits(), mode="process")
    outcome = await repl.run_cell(code)   # a CellOutcome; never raises for what the cell did
    await repl.aclose()

See docs in sandbox/session.py and process_session.py (modes, restarts), policy.py and guards.py (what is allowed).
"""

from sandbox.limits import CellLimits
from sandbox.session import HostBridge, SandboxError, Session, open_session

__all__ = ["CellLimits", "HostBridge", "SandboxError", "Session", "open_session"]
