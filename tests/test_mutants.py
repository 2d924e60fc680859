"""The table of defences in tests/mutants.py still describes the code: each defence reads as listed, exactly once,
and its test exists. Whether each test fails without its defence is `make defences` (minutes, not for every run)."""
import ast

import pytest

from mutants import DEFENCES, ROOT


@pytest.mark.parametrize("defence", DEFENCES, ids=lambda d: f"{d.file}: {d.what}")
def test_each_defence_reads_as_listed_and_its_test_exists(defence):
    assert (ROOT / defence.file).read_text().count(defence.old) == 1
    assert defence.new != defence.old
    module, _, name = defence.test.partition("::")
    tests = {node.name for node in ast.walk(ast.parse((ROOT / module).read_text())) if isinstance(node, ast.FunctionDef)}
    assert name.split("[")[0] in tests


def test_no_defence_is_listed_twice():
    assert len({(d.file, d.old) for d in DEFENCES}) == len(DEFENCES)
