"""The smallest rlm run from Python: one blocking `RLM.query` over a long text.

Start the scripted server first (no key needed): `python -m rlm.scripted --policy demo`, then
`python examples/quickstart.py`. For a real model set RLM_MODEL, RLM_SUB_MODEL and the provider's key
(and RLM_API_BASE for a local server).
"""

import os

from rlm import RLM
from rlm.scripted.demo import DEMO_QUESTION, make_demo_log

rlm = RLM(
    model=os.environ.get("RLM_MODEL", "openai/scripted-root"),
    sub_model=os.environ.get("RLM_SUB_MODEL", "openai/scripted-sub"),
    api_base=os.environ.get("RLM_API_BASE", "http://127.0.0.1:8765/v1"),
    api_key=os.environ.get("RLM_API_KEY", "sk-local"),
    max_cost=1.0,  # dollars for the whole tree of calls; the run stops cleanly when it is spent
)
log = make_demo_log(5_000)  # any str, list of documents or Context works here
result = rlm.query(log, DEMO_QUESTION)
print(result.answer)
print(result)  # status, cost, calls and time at a glance
