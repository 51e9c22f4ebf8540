"""rlm end to end with no key and no server to start: a scripted model server runs in this process.

The scripted models are not LLMs; they play a fixed plan (look at the log, fan out to the sub-model with
llm_query_batched, answer), which is enough to watch the engine stream, run code and stop.
`--trace run.jsonl` writes the run's events, to open with `rlm view run.jsonl`.
"""

import argparse

from rlm.scripted import ScriptedServer
from rlm.scripted.demo import DEMO_QUESTION, demo_rlm, install_demo, make_demo_log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trace", help="write the run's events to this JSONL file")
    args = parser.parse_args()
    with ScriptedServer() as server:
        install_demo(server)
        rlm = demo_rlm(server)
        result = rlm.query(make_demo_log(5_000), DEMO_QUESTION, trace=args.trace)
    print(result.answer)
    print(result)


if __name__ == "__main__":
    main()
