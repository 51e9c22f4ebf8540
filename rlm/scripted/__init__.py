"""The local OpenAI-compatible server with scripted, streaming, latency-controlled replies."""

from rlm.scripted.server import ChatRequest, Drop, Fault, Garbage, Reply, RequestRecord, ScriptedServer, Stall

__all__ = ["ChatRequest", "Drop", "Fault", "Garbage", "Reply", "RequestRecord", "ScriptedServer", "Stall"]
