"""The messages the root model sees. Same REPL protocol as the official `rlms` package.

The root model is told the context's size and shape, never its body. The history is append-only
(system, first user turn, then assistant/user pairs) so providers can cache its prefix.
"""

from __future__ import annotations

from typing import Any

SYSTEM_PROMPT = """\
You are answering a query about a context that is far too large to read directly. You work in a \
Python REPL where the context is loaded, and you can call sub-models from your code. You will be \
queried iteratively until you submit a final answer.

The REPL gives you:
1. `context`: the data, shared without copying. It behaves like a read-only `str`: `len`, \
`context[i:j]` (a view, no copy), `in`, `find`/`rfind`/`index`/`count`, `startswith`/`endswith`, \
`==`, `+` and f-strings, `splitlines()`, `split()` and `lines()` (a lazy line iterator). These copy the \
whole view, so slice or chunk first: `str(view)`, f-strings and `+`, `splitlines()`/`split()`, and \
any other str method (`upper`, `replace`, ...). `isinstance(context, str)` is False: where a library \
needs a real str (`re`, `json`, `str.join`), pass `str(context[a:b])`, e.g. \
`"\\n".join(map(str, chunks))`. A list of documents behaves like a list: \
`len(context)` is the number of documents, `context[i]` or `context["name"]` is one, with a `.name`.
2. `llm_query(prompt, model=None)`: one sub-model completion (no REPL). Use it to read, extract, \
classify or summarise a chunk; it handles about 100K tokens per call. Sub-calls go to a fast, \
cheap model; pass `role="aggregate"` for a final synthesis that needs the strongest model.
3. `llm_query_batched(prompts, model=None)`: many `llm_query` calls run concurrently; returns a \
list of answers in order. Much faster than a loop of `llm_query`.
4. `rlm_query(prompt, model=None, context=None)`: a child RLM with its own REPL that reasons \
iteratively over `context` (a slice or document of yours; by default the prompt itself). Use it for \
sub-tasks that need several steps. `rlm_query_batched(prompts, model=None, contexts=None)` runs many.
5. Search that runs in native code over the whole context, in linear time:
   - `search(["keyword", ...], ignore_case=True)`: every occurrence of hundreds of keywords in one \
pass (Aho-Corasick). Each hit has `.start`, `.end` (character offsets), `.line`, `.match`, \
`.keyword`, `.snippet` (the line around it) and, for documents, `.doc` and `.name`.
   - `regex(r"order #(\\d+)")`: RE2 regular expressions (linear time, no backtracking blow-ups); \
hits as above, with `.groups`. Unlike `re`: no lookaround or backreferences, `\\b` is ASCII-only, and \
`$` without re.M matches only at the very end.
   - `grep(r"pattern", context_lines=2)`: matching lines with the lines around them.
   - `chunk_lines(n)`, `chunk_chars(n, overlap=0)`, `chunk_tokens(n, overlap=0)`: split the context \
into zero-copy views; `count_tokens(x)` counts tokens of any text or view.
   All of them search `context` by default; pass a slice, a document or a str as the second \
argument to search that instead, e.g. `regex(r"\\d+", context[5])`.
6. `SHOW_VARS()` lists the variables you have made; `print()` shows you values (long output is \
truncated, so print summaries, not whole chunks).

{blocks} Example:
```repl
hits = search(["magic number"], ignore_case=True)
print(len(hits), hits[:3])
```
Break big problems into pieces: chunk the context, send chunks to `llm_query_batched`, combine the \
answers in code. Look through the whole context before you answer.

When you are done, submit the answer in one of these ways:
- in code: `answer["content"] = ...` then `answer["ready"] = True`;
- in prose, on its own line and outside code: FINAL(your answer) or FINAL_VAR(variable_name) for a \
variable you already created in an earlier block.
Do not submit before you have looked at the context. Answer the original query explicitly."""

BLOCKS = {
    "stop": "Write one ```repl block per reply: it runs as soon as you close it, and your reply ends there; \
you see its output in the next turn, so never guess what it will print.",
    "continue": "You may write several ```repl blocks in a reply: each runs as soon as you close it, in order, \
and you see every output in the next turn; never guess what a block will print.",
}
BLOCKS["wait"] = BLOCKS["continue"]

FIRST_TURN = """\
{shape}

Query: {question}

You have not looked at the context yet. Start by exploring it in the REPL; do not answer yet."""

NEXT_TURN = """\
{outputs}

Continue with ```repl code, or submit your answer to the query: "{question}"."""

OUT_OF_TURNS = """\
You have no turns left. Reply now with your best answer to the query "{question}", as plain text \
with no code; say what is uncertain."""

NO_CODE = "(Your last reply ran no code and submitted no answer.)"


def describe_context(shape: dict[str, Any]) -> str:
    """One sentence on the context's type and size, never its body."""
    kind = shape.get("type", "str")
    total = shape.get("total_chars", 0)
    text = f"Your context is a {kind} with {total:,} characters"
    lengths = shape.get("doc_lengths")
    if lengths and len(lengths) > 1:
        shown = ", ".join(str(n) for n in lengths[:100])
        more = f", ... ({len(lengths) - 100} more)" if len(lengths) > 100 else ""
        text += f", in documents of these lengths: [{shown}{more}]"
    note = f" Note: {shape['note']}." if shape.get("note") else ""
    return text + "." + note


def first_messages(shape: dict[str, Any], question: str, after_block: str) -> list[dict[str, str]]:
    """The system prompt (which says how blocks run under `after_block`) and the first user turn."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT.replace("{blocks}", BLOCKS[after_block])},
        {"role": "user", "content": FIRST_TURN.format(shape=describe_context(shape), question=question)},
    ]


def clip(text: str, limit: int) -> str:
    """Keep the head and the tail of long output, saying how much was cut from the middle."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}\n... [{len(text) - limit:,} characters cut] ...\n{text[-tail:]}"


def format_cell(code: str, output: str) -> str:
    return f"Code executed:\n```python\n{code}\n```\n\nREPL output:\n{output or 'No output'}"


def next_turn(cells: list[tuple[str, str]], question: str, limit: int) -> dict[str, str]:
    """The user turn after a reply: every block's output (each clipped), then the standing query."""
    outputs = "\n\n".join(format_cell(code, clip(output, limit)) for code, output in cells) or NO_CODE
    return {"role": "user", "content": NEXT_TURN.format(outputs=outputs, question=question)}
