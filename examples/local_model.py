"""rlm against a model on your own machine, through its OpenAI-compatible endpoint.

  Ollama:     ollama serve; ollama pull qwen3
              python examples/local_model.py --model ollama_chat/qwen3 --api-base http://localhost:11434
  llama.cpp:  llama-server -m model.gguf --port 8080
              python examples/local_model.py --model openai/local --api-base http://localhost:8080/v1
  vLLM:       vllm serve Qwen/Qwen3-8B --port 8000
              python examples/local_model.py --model openai/Qwen/Qwen3-8B --api-base http://localhost:8000/v1

Local models are free (no price: cost is reported as unknown, so budgets use --max-calls/--max-tokens)
and can think for minutes over a long prompt before the first token; rlm waits up to first_byte_timeout
(600 s by default) for it.
"""

import argparse
from pathlib import Path

from rlm import RLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", required=True, help="litellm model name, e.g. openai/NAME for an OpenAI-compatible server"
    )
    parser.add_argument("--sub-model", help="a smaller model for sub-calls (default: the same model)")
    parser.add_argument("--api-base", required=True, help="the server's root, e.g. http://localhost:8080/v1")
    parser.add_argument("--context", type=Path, help="a text file to ask about (default: a generated log)")
    parser.add_argument("question", nargs="?", help="the question (default: the demo's question about the log)")
    args = parser.parse_args()

    from rlm.scripted.demo import DEMO_QUESTION, make_demo_log

    text = args.context.read_text() if args.context else make_demo_log(2_000)
    rlm = RLM(
        model=args.model,
        sub_model=args.sub_model or args.model,
        api_base=args.api_base,
        api_key="sk-local",  # local servers ignore it, but OpenAI-style clients send one
        max_calls=40,  # a local model has no price, so a call budget bounds the run
        max_in_flight=4,  # a single local GPU serves a few requests at once, not dozens
    )
    result = rlm.query(text, args.question or DEMO_QUESTION)
    print(result.answer)
    print(result)


if __name__ == "__main__":
    main()
