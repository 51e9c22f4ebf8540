"""`rlm view`: a run's trajectory as a tree in the terminal, a self-contained HTML page, or inline in a
notebook. `trace` reads a trace into a tree (`tree`); the renderers only draw it."""

from rlm.view.trace import TraceError, TraceReader, load_trace, read_events
from rlm.view.tree import Trace

__all__ = ["Trace", "TraceError", "TraceReader", "load_trace", "read_events"]
