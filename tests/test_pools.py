"""The OOLONG source pools ship inside rlm, so the OOLONG suites run on a fresh clone with nothing beside it."""

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
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


def test_a_built_package_carries_the_data(tmp_path: Path) -> None:
    """What a wheel holds comes from setuptools' build_py: run it on a copy of the project, then load the
    pools and the S-NIAH word lists from the built tree alone."""
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("rlm", "sandbox", "datasets"):
        shutil.copytree(root / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    lib = tmp_path / "lib"
    build = (
        "from setuptools.config.pyprojecttoml import apply_configuration\n"
        "from setuptools.dist import Distribution\n"
        "dist = apply_configuration(Distribution({'script_name': 'setup.py'}), 'pyproject.toml')\n"
        f"cmd = dist.get_command_obj('build_py'); cmd.build_lib = {str(lib)!r}\n"
        "dist.run_command('build_py')\n"
    )
    subprocess.run([sys.executable, "-c", build], cwd=src, check=True, capture_output=True)
    data = lib / "rlm_datasets" / "data"
    shipped = {p.name for p in data.iterdir()}
    assert {"SOURCE.md", "ruler_adjectives.txt.gz", "ruler_nouns.txt.gz"} <= shipped
    assert {f"{name}_validated.jsonl.gz" for name in pools.POOL_INFO} <= shipped
    check = (
        f"import sys; sys.path.insert(0, {str(lib)!r})\n"
        "import rlm_datasets\n"
        f"assert rlm_datasets.__file__.startswith({str(lib)!r}), rlm_datasets.__file__\n"
        "from rlm_datasets.pools import load_pool\n"
        "from rlm_datasets.sniah import make_key\n"
        "import random\n"
        "print(len(load_pool('spam').texts), len(load_pool('trec_coarse').texts), make_key(random.Random(0)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != pools.DATA_ENV}
    out = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, check=True, capture_output=True)
    spam, trec, key = out.stdout.decode().split()
    assert (int(spam), int(trec)) == (5009, 4151) and "-" in key


def test_sniah_word_lists_are_the_ones_source_md_names() -> None:
    data = Path(pools.__file__).resolve().parent / "data"
    source = (data / "SOURCE.md").read_text(encoding="utf-8")
    for name in ("adjectives", "nouns"):
        digest = hashlib.sha256(gzip.decompress((data / f"ruler_{name}.txt.gz").read_bytes())).hexdigest()
        assert digest in source, name
