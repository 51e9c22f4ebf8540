"""Objects of rlm.context and rlm.search that no allow-list names expose nothing to a cell, whichever
module of those packages defines them: splitting a package must not open its objects up."""

from __future__ import annotations

import pytest

from sandbox.guards import guarded_getattr
from sandbox.rules import PolicyError


@pytest.mark.parametrize("module", ["rlm.context", "rlm.context.store", "rlm.search", "rlm.search.hits"])
def test_an_unlisted_object_of_the_context_and_search_packages_has_no_attributes(module: str) -> None:
    class Unlisted:
        visible = "a public class attribute"

    Unlisted.__module__ = module
    with pytest.raises(PolicyError):
        guarded_getattr(Unlisted(), "visible")


@pytest.mark.parametrize("module", ["rlm.contexts", "rlm.search_tools", "mypackage.rlm.context"])
def test_objects_of_other_modules_follow_the_general_rules(module: str) -> None:
    class Other:
        visible = "a public class attribute"

    Other.__module__ = module
    assert guarded_getattr(Other(), "visible") == "a public class attribute"
