"""The README's promises table names tests that exist."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_the_promises_table_names_exists():
    text = (ROOT / "README.md").read_text()
    section = text.split("## What initlab promises", 1)[1].split("\n## ", 1)[0]
    named = 0
    for row in (line for line in section.splitlines() if line.startswith("| ") and "`" in line):
        current = None
        for ref in re.findall(r"`([^`]+)`", row.rsplit(" | ", 1)[-1]):
            path, _, name = ref.partition("::")
            if path.endswith(".py"):
                current = ROOT / "tests" / Path(path).name
                assert current.exists(), ref
            if name:
                assert current is not None, ref
                functions = {n.name for n in ast.walk(ast.parse(current.read_text()))
                             if isinstance(n, ast.FunctionDef)}
                assert name in functions, f"{current.name} has no {name}"
                named += 1
    assert named >= 10
