"""The local OpenAI-compatible server with scripted, streaming, latency-controlled replies."""

from rlm.scripted.script import Action, ChatRequest, Drop, Fault, Garbage, Reply, RequestRecord, Stall
from rlm.scripted.server import ScriptedServer

__all__ = ["Action", "ChatRequest", "Drop", "Fault", "Garbage", "Reply", "RequestRecord", "ScriptedServer", "Stall"]
