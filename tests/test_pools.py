"""The OOLONG source pools ship inside rlm, so the OOLONG suites run on a fresh clone with nothing beside it."""

import json
from pathlib import Path

import pytest
from rlm_datasets import pools

from rlm.errors import ConfigError


@pytest.fixture(autouse=True)
def _fresh_pool_cache(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(pools.DATA_ENV, raising=False)
    pools.load_pool.cache_clear()
    yield
    pools.load_pool.cache_clear()


@pytest.mark.parametrize(("name", "instances"), [("trec_coarse", 4151), ("spam", 5009)])
def test_packaged_pool_is_inside_the_package_and_complete(name: str, instances: int) -> None:
    path = pools.pool_path(name)
    assert path.is_relative_to(Path(pools.__file__).resolve().parent), path
    pool = pools.load_pool(name)
    # every line of the published pool carries one of the pool's labels: nothing was dropped in packaging
    assert len(pool.texts) == instances
    assert set(pool.gold) == set(pools.POOL_INFO[name][1])


def test_data_env_points_at_a_folder_of_plain_jsonl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"input": "Is this\nspam?", "label": "spam"}, {"input": "hi mum", "label": "ham"}]
    (tmp_path / "spam_validated.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    monkeypatch.setenv(pools.DATA_ENV, str(tmp_path))
    pool = pools.load_pool("spam")
    assert pool.texts == ("Is this spam?", "hi mum")
    assert pool.gold == ("spam", "ham")


def test_data_env_without_the_pool_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pools.DATA_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match=r"spam_validated\.jsonl.*RLM_OOLONG_DATA"):
        pools.load_pool("spam")
