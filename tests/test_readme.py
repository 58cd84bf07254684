"""The docs' outputs are what the commands print: each README block that starts with ``$ python -m xval ...``, and
each block after a ``python examples/NAME.py`` line of docs/problem-set.md, is run and compared line by line
(``python -m tests.test_readme`` rewrites them)."""
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BLOCK = re.compile(r"```\n\$ (python -m xval [^\n]*)\n(.*?)```", re.S)


def command_output(command):
    """What ``command`` (``python -m ...``) prints on stdout, run from the repository root."""
    arguments = shlex.split(command)
    result = subprocess.run([sys.executable, *arguments[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600)
    return result.stdout


def blocks(text):
    return [(match.group(1), match.group(2)) for match in BLOCK.finditer(text)]


def test_readme_check_outputs_are_what_the_command_prints():
    found = blocks(open(README).read())
    assert len(found) >= 2, "the README shows the check of both example engines"
    for command, shown in found:
        assert shown == command_output(command), f"README block of `{command}` differs from its output; run python -m tests.test_readme"


def rewrite():
    """Rewrite the README's ``$ python -m xval`` blocks and the problem set's example outputs from what they print."""
    text = open(README).read()
    for command, shown in blocks(text):
        text = text.replace(f"$ {command}\n{shown}```", f"$ {command}\n{command_output(command)}```", 1)
    with open(README, "w") as handle:
        handle.write(text)
    def printed(match):
        output = subprocess.run([sys.executable, *shlex.split(match.group(1))[1:]], cwd=ROOT, capture_output=True,
                                text=True, timeout=600).stdout
        return match.group(0).replace(f"```\n{match.group(2)}```", f"```\n{output}```")

    text = EXAMPLE_BLOCK.sub(printed, open(PROBLEM_SET).read())
    with open(PROBLEM_SET, "w") as handle:
        handle.write(text)


# ---- docs/problem-set.md: each `python examples/NAME.py` line is followed by the block that script prints --------
PROBLEM_SET = os.path.join(ROOT, "docs", "problem-set.md")
EXAMPLE_BLOCK = re.compile(r"`(python examples/[a-z_]+\.py)`[^\n]*\n\n```\n(.*?)```", re.S)


def test_problem_set_outputs_are_what_the_examples_print():
    found = EXAMPLE_BLOCK.findall(open(PROBLEM_SET).read())
    assert len(found) == 4, [command for command, _ in found]
    for command, shown in found:
        result = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        assert shown == result.stdout, f"docs/problem-set.md block of `{command}` differs from its output; run python -m tests.test_readme"


if __name__ == "__main__":
    rewrite()
