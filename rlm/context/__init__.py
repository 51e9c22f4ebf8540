"""The shared context: one mmap-backed UTF-8 text (or list of documents) for the whole RLM tree.

An RLM exists to read contexts far larger than a prompt, so the text is never copied per REPL or per
child: the user's file is mmapped read-only (bytes or str given by a Python caller are written once to
an anonymous, sealed memfd and mmapped the same way). Every view (a slice, a document, a chunk) is a
character range over that one mapping. `to_spec()` names the file plus a range; `Context.from_spec()`
in a worker process mmaps the same file, so 32 REPLs over a 1 GB file share one copy in the page cache.

Index and complexity. Loading a text validates it and builds, in one pass, a checkpoint table: for
every K = 4096th character, its byte offset and the number of newlines before it (16 bytes per K
characters, i.e. 4 MB per GB of ASCII). The owner writes the table to a memfd that workers mmap, so
`from_spec` is O(1). Character -> byte is then O(1) table lookup + decoding at most 4K characters;
byte -> character and line numbers are O(log n) bisection + the same local work; pure-ASCII texts skip
all of it (characters are bytes). So `len` is O(1), `ctx[i:j]` is O(log n + K) and makes no copy.

str-parity rules (what REPL code sees). A text view is not a `str` subclass, but behaves like a
read-only str: `len`, `ctx[i]`, `ctx[i:j]` (a view, no copy), `in`, `find`/`rfind`/`index`/`count`,
`startswith`/`endswith`, `==`/`hash`/ordering with str, `+` and f-strings, `str(ctx)` (the real
str, materialised once and cached on that view), `splitlines()`, `split()`, `lines()` (a lazy line
iterator) and `encode()`. Searching methods run over the mapped bytes without copying it. What copies:
`str(view)`, f-strings and `+` (the whole view), `splitlines()`/`split()` (a list the size of the
view), a slice with a step, `hash`/`<`, and any other str method (`upper`, `replace`, `strip`, ...),
which is forwarded to `str(view)`. So slice or chunk first, and use `search`/`regex`/`grep`, `lines()`
or `count` on the whole context. `isinstance(ctx, str)` is False: where a library insists on a real
str (`re`, `json`), pass `str(view)` of a slice. Line numbers count "
" (as grep does). A list of
documents behaves like a list: `len` is the number of documents, `ctx[i]` or `ctx["name"]` is a
document view with `.name`, and iteration yields the documents. Views are not str, so `str.join`
refuses them: `"\n".join(map(str, chunks))`. `view * n`, `int(view)` and `float(view)` work as on str.

The file must not change during a run. A mapped file is read in place, so an edit shows through:
an in-place edit gives wrong counts or invalid UTF-8, and a file that shrinks kills the process with
SIGBUS on the next read of a lost page (a signal Python cannot catch). rlm detects a change (size,
mtime, inode) cheaply, not per access: `check_unchanged()` (the engine calls it at checkpoints such
as before each cell), `to_spec()` and `from_spec()` raise ContextError("... changed while rlm was
reading it ..."), and so does any view method that meets bytes that no longer decode. Texts given
as str or bytes live in a sealed memfd and cannot change. Reading a file's bytes leaves a leading
UTF-8 byte-order mark out of the text (files, stdin, bytes); a str is taken exactly as given.

Four modules, one job each: `store` maps the bytes and indexes them (a mapped file or a sealed memfd,
and the checkpoint table), `loaders` turns what a user gives (a path, stdin, bytes, str, JSON) into a
store, checking its encoding, `text` is a range of a store that reads like a str, and `views` is what
code sees (`Context` and its factories, `TextView`: such a range as a context, `DocumentList`).
"""

from rlm.context.views import Context, DocumentList, TextView, close

__all__ = ["Context", "DocumentList", "TextView", "close"]
