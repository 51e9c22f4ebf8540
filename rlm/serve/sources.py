"""Where a served run's context comes from: the earlier messages, files under the operator's roots, uploads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlm.serve.openai_format import ApiError
from rlm.serve.uploads import Upload


def resolve_under_roots(name: Any, roots: list[Path]) -> Path:
    """The file `name` names, symlinks resolved, if it lies under an allowed root; 403 otherwise."""
    if not isinstance(name, str) or not name:
        raise ApiError(400, "context_files entries must be non-empty strings", "invalid_context_files", "rlm")
    if not roots:
        raise ApiError(403, "this server allows no context files (start it with --context-root DIR)", "no_roots", "rlm")
    given = Path(name)
    candidates = [given] if given.is_absolute() else [root / given for root in roots]
    inside = []
    for candidate in candidates:
        resolved = candidate.resolve()
        if any(resolved.is_relative_to(root) for root in roots):
            inside.append(resolved)
    if not inside:
        raise ApiError(403, f"{name!r} is outside the server's context roots", "path_outside_roots", "rlm")
    for path in inside:
        if path.is_file():
            return path
    raise ApiError(404, f"no file {name!r} under the server's context roots", "file_not_found", "rlm")


def build_context(history: str, paths: list[Path], uploads: list[Upload]) -> Any:
    """The run's context: the earlier messages, then each named or uploaded file as a document."""
    from rlm.context import Context, close

    if not paths and not uploads:
        return Context.from_value(history or "(no context was given)")
    views: list[Any] = []
    try:
        if history:
            views.append(Context.from_value(history, name="conversation"))
        views += [Context.from_path(path, documents=False) for path in paths]
        views += [Context.from_value(u.data, name=u.filename) for u in uploads]
    except BaseException:
        for view in views:
            close(view)
        raise
    return views[0] if len(views) == 1 else Context.from_value(views)
