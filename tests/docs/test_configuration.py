"""The configuration reference (docs/configuration.md) and .env.example name exactly the
environment variables settings reads: a variable added to settings without its row, or a row left
for a variable settings no longer reads, fails here.

Only what nanoclone/settings.py reads counts. serve also passes its own children a variable that
settings never reads (nanoclone.eventloop's balance directory): it is serve's internals, not
configuration, so neither file lists it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV_HELPERS = {"env_str", "env_bool", "env_int", "env_float", "env_list", "env_secret"}
ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|")


def read_by_settings() -> set[str]:
    """Every variable name settings.py reads: through its env_* helpers or os.environ.get()."""
    names = set()
    for node in ast.walk(ast.parse((ROOT / "nanoclone" / "settings.py").read_text())):
        if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        function = node.func
        helper = isinstance(function, ast.Name) and function.id in ENV_HELPERS
        environ_get = (
            isinstance(function, ast.Attribute)
            and function.attr == "get"
            and isinstance(function.value, ast.Attribute)
            and function.value.attr == "environ"
        )
        if helper or environ_get:
            names.add(str(node.args[0].value))
    return names


def documented() -> list[str]:
    """The variables of the configuration reference's tables, in order (a row's first cell)."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    return [match.group(1) for line in text.splitlines() if (match := ROW.match(line))]


def in_env_example() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if re.match(r"^[A-Z][A-Z0-9_]*=", line)}


def test_it_finds_what_settings_reads() -> None:
    names = read_by_settings()
    assert {"NANOCLONE_DATA_DIR", "DATABASE_URL", "NANOCLONE_SECRET_KEY", "PROMETHEUS_MULTIPROC_DIR"} <= names
    assert len(names) > 50


def test_the_configuration_reference_has_a_row_for_each_variable_settings_reads_and_no_other() -> None:
    rows = documented()
    assert sorted(set(rows)) == sorted(read_by_settings())
    assert len(rows) == len(set(rows)), "a variable has two rows"


def test_env_example_lists_each_variable_settings_reads_and_no_other() -> None:
    assert sorted(in_env_example()) == sorted(read_by_settings())
