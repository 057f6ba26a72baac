"""The README's command-line examples run and print what the README says.

(The README's Python examples are doctests: pytest runs them through
``--doctest-glob=README.md``, see pyproject.toml.)
"""

import os
import re
import shlex

import pytest

from sparsetconv.__main__ import main

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _console_examples():
    text = open(README, encoding="utf-8").read()
    examples = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        command, expected = None, []
        for line in block.splitlines():
            if line.startswith("$ "):
                if command:
                    examples.append((command, "\n".join(expected)))
                command, expected = line[2:], []
            else:
                expected.append(line)
        if command:
            examples.append((command, "\n".join(expected)))
    return examples


EXAMPLES = _console_examples()


def test_readme_has_console_examples():
    assert EXAMPLES, "README.md has no ```console examples"


@pytest.mark.parametrize("command, expected", EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_console_example(command, expected, capsys):
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "sparsetconv"], command
    assert main(argv[3:]) == 0
    assert capsys.readouterr().out.strip() == expected.strip()
