"""Every ```python block in the README and docs/ runs, so the docs cannot drift from the code.

Blocks run in a fresh folder that holds ``runs/``: tiny trained stand-ins for the runs the docs train
(``doc_runs`` in conftest.py). The ```bash blocks run in tests/test_docs_shell.py.
"""

import re

import pytest
from _helpers import DOCS, ROOT

BLOCK = re.compile(r"```python\n(.*?)```", re.S)
SNIPPET = re.compile(r'^--8<-- "(.+)"$', re.M)  # pymdownx.snippets: the block shows a file of the repository


def _expand(code: str) -> str:
    return SNIPPET.sub(lambda m: (ROOT / m.group(1)).read_text(), code)


def _blocks():
    for path in DOCS:
        for i, code in enumerate(BLOCK.findall(path.read_text())):
            yield pytest.param(_expand(code), id=f"{path.relative_to(ROOT)}#{i}")


@pytest.mark.parametrize("code", list(_blocks()))
def test_doc_block_runs(code, tmp_path, monkeypatch, doc_runs):
    (tmp_path / "runs").symlink_to(doc_runs)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<doc>", "exec"), {"__name__": "__doc_example__"})


YAML_BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)


@pytest.mark.parametrize(
    "path", [p for p in DOCS if YAML_BLOCK.search(p.read_text())], ids=lambda p: str(p.relative_to(ROOT))
)
def test_doc_yaml_blocks_parse(path):
    import yaml

    for block in YAML_BLOCK.findall(path.read_text()):
        assert isinstance(yaml.safe_load(_expand(block)), dict), block
