"""The README's command outputs are what the commands print: each fenced block that starts with
``$ python -m xval ...`` is run and compared line by line (``python -m tests.test_readme`` rewrites them)."""
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
    text = open(README).read()
    for command, shown in blocks(text):
        text = text.replace(f"$ {command}\n{shown}```", f"$ {command}\n{command_output(command)}```", 1)
    with open(README, "w") as handle:
        handle.write(text)


if __name__ == "__main__":
    rewrite()
