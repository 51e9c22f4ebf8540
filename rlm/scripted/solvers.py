"""Scripted solver policies: a root model that solves the bench suites with real REPL code, and a sub
model that labels instances with a keyword heuristic.

They let `rlm bench` run end to end offline (tests, demos). The root policy reads only what a real root
model sees (the system prompt, the query and REPL outputs); it writes code that reads `context`, sends
instances to `llm_query_batched` in chunks, aggregates the labels in Python and, on the next turn,
submits with FINAL_VAR. The sub policy sees only the text it is asked to label. Neither ever sees gold
answers or labels, so their accuracy is whatever the heuristic earns.

Given a direct prompt instead (`rlm bench --method direct`: the whole context, truncated by the harness to
the model's window, then the question), the root "model" is a SCRIPTED DIRECT BASELINE: it applies the
same keyword heuristic to the records it can see in that one prompt and aggregates them with the same
code, in one call. It does not lose track inside a long prompt the way a real model may, so its direct
scores differ from the RLM path's only where the harness cut the context to fit the window (128K tokens
for these unknown model names); they are no estimate of a real model's direct-call quality.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rlm.scripted.script import ChatRequest
from rlm.scripted.server import ScriptedServer

ROOT_MODEL = "solver-root"
SUB_MODEL = "solver-sub"
CHUNK = 25  # instances per sub-call

_DATE = r"([A-Z][a-z]{2} \d{2}, \d{4})"

# ---------------------------------------------------------------------------------------------------
# Sub model: keyword heuristics, deliberately simple.

_TREC_RULES: tuple[tuple[str, str], ...] = (
    ("abbreviation", r"\bstands? for\b|\babbreviat|\bacronym\b|\bwhat does (?-i:[A-Z]{2,})\b"),
    ("human being", r"^(who|whom|whose)\b|\bwhat (person|man|woman)\b|\bname the (person|man|woman)\b"),
    ("location", r"^where\b|\bwhat (country|city|state|continent|province|river|mountain)\b|\bcapital\b"),
    (
        "numeric value",
        r"^(when|how (many|much|long|far|old|tall|big|fast|hot|cold))\b|\bwhat year\b|\bpopulation\b",
    ),
    (
        "description and abstract concept",
        r"^(why|how)\b|\bwhat (is|are) (a|an|the)?\s*\w+ ?\?$|\bdefin|\bmean\b",
    ),
)
_SPAM_WORDS = re.compile(
    r"\b(free|win|won|winner|prize|claim|urgent|cash|txt|text|call now|reply|offer|award|guaranteed|"
    r"ringtone|mobile|www|http|stop)\b|£|\d{5,}",
    re.IGNORECASE,
)


def classify(text: str, labels: list[str]) -> str:
    """A keyword guess at the label of one instance (trec_coarse or spam label sets; else the first)."""
    if set(labels) == {"ham", "spam"}:
        return "spam" if len(_SPAM_WORDS.findall(text)) >= 2 else "ham"
    for label, pattern in _TREC_RULES:
        if label in labels and re.search(pattern, text.strip(), re.IGNORECASE):
            return label
    return "entity" if "entity" in labels else labels[0]


def sub_policy(request: ChatRequest) -> str:
    """Answer a labelling prompt ('one of: a, b.' then numbered items) with '<n>: <label>' lines."""
    prompt = _text(request.messages[-1]) if request.messages else ""
    m = re.search(r"one of: (.+?)\.\n", prompt)
    labels = [x.strip() for x in m[1].split(",")] if m else []
    items = re.findall(r"^(\d+)\. (.*)$", prompt, re.MULTILINE)
    if not labels or not items:
        return "I can only label numbered items."
    return "\n".join(f"{n}: {classify(text, labels)}" for n, text in items)


# ---------------------------------------------------------------------------------------------------
# Root model: turn 0 writes the code, turn 1 submits.

_READ_AND_LABEL = """\
import re
from collections import Counter
from datetime import date, datetime
{labels_code}
rows = []
for line in str(context).splitlines():
    if line.startswith("Date: "):
        head, user, text = line.split(" || ", 2)
        rows.append((datetime.strptime(head[6:], "%b %d, %Y").date(), user[6:], text[10:]))
prompts = []
for start in range(0, len(rows), {chunk}):
    body = "\\n".join(str(k + 1) + ". " + r[2] for k, r in enumerate(rows[start:start + {chunk}]))
    prompts.append("Label each {kind} below with one of: " + ", ".join(LABELS) + ".\\n"
                   + "Reply with one line per item, as '<number>: <label>'.\\n\\n" + body)
replies = llm_query_batched(prompts)
labels = []
for start, reply in zip(range(0, len(rows), {chunk}), replies):
    got = dict((int(m.group(1)), m.group(2).strip().lower())
               for m in re.finditer(r"^\\s*(\\d+)\\s*[:.)]\\s*(.+)$", reply, re.M))
    labels.extend(got.get(k + 1) for k in range(min({chunk}, len(rows) - start)))
days = [r[0] for r in rows]
users = [r[1] for r in rows]
print(len(rows), "rows labelled;", Counter(labels).most_common())
"""

_PAIRS = """\
SPEC = {spec!r}
by_user = {{}}
for d, u, lab in zip(days, users, labels):
    by_user.setdefault(u, []).append((d, lab))
def meets(cond, recs):
    c = Counter(lab for _, lab in recs)
    if cond["any_of"] and not any(c[x] for x in cond["any_of"]):
        return False
    for lab, k, exact in cond["needs"]:
        if (c[lab] != k) if exact else (c[lab] < k):
            return False
    if cond["rule"]:
        lab, after, day = cond["rule"]
        cut = datetime.strptime(day, "%B %d, %Y").date()
        for d, l in recs:
            if l == lab and ((d <= cut) if after else (d >= cut)):
                return False
    return True
ids = sorted(by_user, key=int)
one = set(u for u in ids if meets(SPEC["one"], by_user[u]))
other = one if SPEC["other"] is None else set(u for u in ids if meets(SPEC["other"], by_user[u]))
found = []
for i, a in enumerate(ids):
    for b in ids[i + 1:]:
        if (a in one and b in other) or (b in one and a in other):
            found.append("(" + a + ", " + b + ")")
result = "\\n".join(found) or "[]"
print(len(found), "pairs")
"""


def _text(message: dict[str, Any]) -> str:
    content = message.get("content", "")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _query(messages: list[dict[str, Any]]) -> str:
    first = next((_text(m) for m in messages if m.get("role") == "user"), "")
    m = re.search(r"Query: (.*?)(?:\n\nYou have not looked|\Z)", first, re.DOTALL)
    return (m[1] if m else first).strip()


# OOLONG's official prompt names the labels in the context's opening description, not in the question.
_LABELS_FROM_CONTEXT = """\
head = str(context)[:3000]
found = re.search(r"one of \\d+ categories: (.+?)\\.\\n", head)
two = re.search(r"classified as (\\w+) or (\\w+)", head)
LABELS = re.findall(r"'([^']+)'", found.group(1)) if found else list(two.groups()) if two else []"""

_SUBSETS = (  # the official subset preambles, as a condition on row i
    (r"associated with user IDs ([\d, ]+)\. Among", lambda m: f"users[i] in {m[1].replace(' ', '').split(',')!r}"),
    (r"subset of users with IDs ([\d, ]+)\. Among", lambda m: f"users[i] in {m[1].replace(' ', '').split(',')!r}"),
    (r"occur in (\w+) of any year", lambda m: f"days[i].strftime('%B') == {m[1]!r}"),
    (
        r"occur between " + _DATE + " and " + _DATE + ", inclusive",
        lambda m: (
            f"datetime.strptime({m[1]!r}, '%b %d, %Y').date() <= days[i] <= "
            f"datetime.strptime({m[2]!r}, '%b %d, %Y').date()"
        ),
    ),
)
_MONTHLY = (
    "M = {}\nfor d, l in sorted(zip(D, L), key=lambda x: x[0]):\n"
    "    M.setdefault((d.year, d.month), Counter())[l] += 1\n"
    "S = [(k, {x: c / sum(v.values()) for x, c in v.items()}) for k, v in M.items()]\n"
)


def _oolong_answer(q: str) -> str | None:
    """The aggregation code for one official OOLONG question (counting, user or timeline), or None."""
    cond = next((make(m) for pattern, make in _SUBSETS if (m := re.search(pattern, q))), None)
    code = (
        f"keep = [i for i in range(len(rows)) if {cond or 'True'}]\n"
        "L, U, D = [labels[i] for i in keep], [users[i] for i in keep], [days[i] for i in keep]\n"
        f"C = Counter(x for x in L if x)\nKEYS = {'list(C)' if cond else 'LABELS'}\n"
    )
    if "which of the labels is the most common" in q:
        return code + "result = 'Label: ' + max(KEYS, key=lambda x: C[x])"
    if "which of the labels is the least common" in q:
        return code + "result = 'Label: ' + min(KEYS, key=lambda x: C[x])"
    if m := re.search(r"is label '([^']+)' more common, less common, or the same frequency as label '([^']+)'", q):
        return code + (
            f"a, b = {m[1]!r}, {m[2]!r}\nphrase = 'more common than' if C[a] > C[b] else 'less common than' "
            "if C[a] < C[b] else 'same frequency as'\nresult = 'Answer: ' + a + ' is ' + phrase + ' ' + b"
        )
    if m := re.search(r"how many data points should be classified as label '([^']+)'", q):
        return code + f"result = 'Answer: ' + str(C[{m[1]!r}])"
    if m := re.search(r"which user is represented (the second )?most often", q):
        return code + f"result = 'User: ' + Counter(U).most_common(2)[{1 if m[1] else 0}][0]"
    if m := re.search(r"which user has the most instances with the label ([^?]+)\?", q):
        return code + f"result = 'User: ' + Counter(u for u, l in zip(U, L) if l == {m[1]!r}).most_common(1)[0][0]"
    if m := re.search(r"which user has more instances with the label (.+?): User (\d+) or User (\d+)\?", q):
        return code + (
            f"P = Counter(u for u, l in zip(U, L) if l == {m[1]!r})\n"
            f"result = 'User: ' + ({m[2]!r} if P[{m[2]!r}] >= P[{m[3]!r}] else {m[3]!r})"
        )
    if m := re.search(r"which date is represented (the second )?most often", q):
        pick = 1 if m[1] else 0
        return code + f"result = 'Date: ' + Counter(D).most_common(2)[{pick}][0].strftime('%m/%d/%Y')"
    if m := re.search(r"how many dates are represented exactly (\d+) times", q):
        return code + f"result = 'Answer: ' + str(sum(1 for c in Counter(D).values() if c == {m[1]}))"
    if m := re.search(r"was label '([^']+)' more common, less common, or the same frequency before (\S+), as", q):
        return code + (
            f"x, cut = {m[1]!r}, date.fromisoformat({m[2]!r})\n"
            "B, A = [l for d, l in zip(D, L) if d < cut], [l for d, l in zip(D, L) if d > cut]\n"
            "diff = B.count(x) / max(len(B), 1) - A.count(x) / max(len(A), 1)\n"
            "result = 'Answer: ' + x + ' is ' + ('more common' if diff > 0 else 'less common' if diff < 0 "
            "else 'the same frequency') + ' before ' + str(cut)"
        )
    if m := re.search(r"did the label '(.+?) first occur more often than the label '(.+?)'\?", q):
        return (
            code
            + _MONTHLY
            + (
                f"hit = [k for k, s in S if s.get({m[1]!r}, 0) > s.get({m[2]!r}, 0)]\n"
                "result = 'Answer: ' + (date(hit[0][0], hit[0][1], 1).strftime('%B %Y') if hit else 'none')"
            )
        )
    if m := re.search(r"does the label '(.+?)' occur more frequently than the label '(.+?)'\?", q):
        return (
            code + _MONTHLY + f"result = 'Answer: ' + str(sum(s.get({m[1]!r}, 0) > s.get({m[2]!r}, 0) for _, s in S))"
        )
    if m := re.search(r"months is the label '(.+?)' the single most frequently", q):
        alone = f"all(v < s.get({m[1]!r}, 0) for k, v in s.items() if k != {m[1]!r})"
        return code + _MONTHLY + f"result = 'Answer: ' + str(sum({alone} for _, s in S))"
    return None


_COUNT = {"one": 1, "two": 2}


def _condition(words: str, labels: list[str]) -> dict[str, Any]:
    """Read one user condition of an OOLONG-Pairs query (the paper's wording) back into data."""
    cond: dict[str, Any] = {"any_of": [], "needs": [], "rule": None}
    label = "(" + "|".join(re.escape(x) for x in sorted(labels, key=len, reverse=True)) + ")"
    if m := re.match(rf"at least one instance with (?:an? )?{label} or {label}", words):
        cond["any_of"] = [m[1], m[2]]
    else:
        for amount, k, name in re.findall(rf"(at least|exactly) (one|two) instances? with {label}", words):
            cond["needs"].append([name, _COUNT[k], amount == "exactly"])
        cond["needs"] += [[name, 1, False] for name in re.findall(rf" and one with {label}", words)]
    if m := re.search(
        rf"all instances that are (?:an? )?{label} for both users must be (after|before) (\w+ \d+, \d{{4}})", words
    ):
        cond["rule"] = [m[1], m[2] == "after", m[3]]
    return cond


def _pairs_spec(q: str, labels: list[str]) -> dict[str, Any] | None:
    if m := re.search(r"where both users have (.*?)\. Each", q):
        return {"one": _condition(m[1], labels), "other": None}
    if m := re.search(r"such that one user has (.*?), and the other user has (.*?)\. Each", q):
        return {"one": _condition(m[1], labels), "other": _condition(m[2], labels)}
    return None


def _first_turn(q: str) -> str:
    if m := re.search(r"special magic (number|uuid) for (.+?) mentioned in the provided text", q):
        needle = f"special magic {m[1]}s for {m[2]} is: "
        return (
            "Let me search the context for the key.\n```repl\n"
            f"at = context.find({needle!r})\n"
            f"result = str(context[at + {len(needle)}:at + {len(needle) + 40}]).split('.')[0].strip() "
            "if at >= 0 else 'not found'\nprint(result)\n```"
        )
    labels_m = re.search(r"figure out the label from the semantics of the question\): (.+?)\. In your answer", q)
    labels = [x.strip() for x in labels_m[1].split(",")] if labels_m else []
    if labels_m:  # OOLONG-Pairs names its labels in the question
        kind, labels_code = "question", f"LABELS = {labels!r}"
    elif _oolong_answer(q):
        kind, labels_code = "instance", _LABELS_FROM_CONTEXT
    else:
        return "I do not know how to solve this.\n```repl\nresult = 'unknown'\nprint(context[:200])\n```"
    setup = _READ_AND_LABEL.format(labels_code=labels_code, chunk=CHUNK, kind=kind)
    spec = _pairs_spec(q, labels)
    tail = _PAIRS.format(spec=spec) if spec else (_oolong_answer(q) or "result = 'unknown'") + "\nprint(result)"
    return f"I will label every instance with sub-calls, then aggregate in code.\n```repl\n{setup}{tail}\n```"


_RECORD = re.compile(r"^Date: [A-Z][a-z]{2} \d{2}, \d{4} \|\| User: \d+ \|\| Instance: ", re.MULTILINE)
DIRECT_LABEL = "scripted direct baseline (keyword heuristic over the prompt it was given; not an LLM)"


def _is_direct(messages: list[dict[str, Any]]) -> bool:
    """An RLM root prompt explains ```repl blocks in its system message; a direct prompt does not."""
    return not any("```repl" in _text(m) for m in messages if m.get("role") == "system")


def direct_policy(request: ChatRequest) -> str:
    """Answer a whole-context prompt in one reply: the solver's own code, run here over the visible text.

    The question is the prompt's last paragraph and the context everything before it (as `rlm bench
    --method direct` sends them). Record lines the harness cut in half are dropped, so records removed
    to fit the window are simply unseen. Sub-calls are the sub policy's heuristic, run in-process.
    """
    prompt = next((_text(m) for m in reversed(request.messages) if m.get("role") == "user"), "")
    body, _, question = prompt.rpartition("\n\n")
    kept = [ln for ln in body.splitlines() if not ln.startswith("Date: ") or _RECORD.match(ln)]
    code = re.search(r"```repl\n(.*?)```", _first_turn(question), re.DOTALL)
    namespace: dict[str, Any] = {
        "context": "\n".join(kept),
        "llm_query_batched": lambda prompts: [sub_policy(_user_request(p)) for p in prompts],
        "print": lambda *args, **kwargs: None,
    }
    try:
        exec(code[1] if code else "result = 'unknown'", namespace)  # the solver's own code, not a model
        result = str(namespace.get("result", "unknown"))
    except Exception as exc:  # a malformed prompt: answer like a model that could not tell
        result = f"unknown ({type(exc).__name__})"
    seen = sum(1 for ln in kept if ln.startswith("Date: "))
    visible = f"; {seen} records visible" if seen else ""
    return f"[{DIRECT_LABEL}{visible}]\n{result}"


def _user_request(prompt: str) -> ChatRequest:
    messages = [{"role": "user", "content": prompt}]
    return ChatRequest(
        model=SUB_MODEL, messages=messages, stream=False, temperature=None, max_tokens=None, raw={}, index=0
    )


def root_policy(request: ChatRequest) -> str:
    """Turn 0: write the solving code. Later turns: submit `result`, unless the code failed. A direct
    prompt (no REPL) is answered in one reply by `direct_policy`."""
    if _is_direct(request.messages):
        return direct_policy(request)
    turns = sum(1 for m in request.messages if m.get("role") == "assistant")
    if turns == 0:
        return _first_turn(_query(request.messages))
    last = _text(request.messages[-1])
    if "Traceback" in last or "Error" in last:
        return "The code failed, so I cannot compute the answer.\nFINAL(unknown)"
    return "The result is computed.\nFINAL_VAR(result)"


def install(server: ScriptedServer) -> tuple[str, str]:
    """Script the solver's root and sub models on `server`; returns their model names."""
    server.script(ROOT_MODEL, root_policy)
    server.script(SUB_MODEL, sub_policy)
    return ROOT_MODEL, SUB_MODEL


POLICIES: dict[str, Callable[[ChatRequest], str]] = {ROOT_MODEL: root_policy, SUB_MODEL: sub_policy}
