"""The README and docs/ as a reader uses them: every relative link resolves inside the clone (in the
pages that examples/ writes too), every shell example is either run (CI runs the README's install and
test lines) or marked as needing real data, every `gan` command line in them parses with today's
options, and every command's --help ends with examples that parse too."""

import re
import shlex
from pathlib import Path

import click
import pytest
import typer.main

from gancli.cli import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# the pages the example scripts write (results tables, recipes, searches), committed with their files
WRITTEN = sorted((ROOT / "examples").glob("*.md"))
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
SHELL = ("", "sh", "bash", "shell", "console")
# a command a reader would run: gan, a script of examples/, torchrun, sbatch, python
RUNNABLE = re.compile(r"(^|[|;&(]\s*|\s)(gan|torchrun|sbatch|python3?|examples/\S+\.sh)\s", re.M)


def blocks(page: Path) -> list[tuple[str, str]]:
    return FENCE.findall(page.read_text())


def gan_lines(text: str) -> list[str]:
    """Each `gan ...` command of a shell text: continuations joined, comments, substitutions and the
    rest of a pipeline or list cut off."""
    joined = re.sub(r"\\\n\s*", " ", text)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)  # a comment
        line = re.sub(r"<\([^)]*\)|\$\([^)]*\)", "SUBSTITUTED", line)  # <(gan config x), $(mktemp -d)
        for part in re.split(r"\|\||&&|[|;&]", line):
            words = part.strip().split()
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value gan ...
                words = words[1:]
            if words[:1] == ["gan"]:
                commands.append(" ".join(words))
    return commands


def parses(command_line: str) -> None:
    """The line as `gan` would parse it (options, choices and bounds checked), without running it."""
    group = typer.main.get_command(app)
    args, words = [], iter(shlex.split(command_line)[1:])
    for word in words:  # redirections are the shell's: `> x.toml`, `2> log`, `>x.toml`
        if word in (">", ">>", "2>", "<"):
            next(words, None)
        elif not word.startswith((">", "2>")):
            args.append(word)
    if not args or args[0] in ("--help", "--version"):
        return
    with group.make_context("gan", list(args), resilient_parsing=True) as context:
        name, command, rest = group.resolve_command(context, list(args))
        assert command is not None, f"no command {name!r}"
        command.make_context(name, rest, parent=context)


def test_every_relative_link_resolves():
    broken = []
    for page in [*PAGES, *WRITTEN]:
        for target in re.findall(r"\]\(([^)\s]+)\)|src=\"([^\"]+)\"", page.read_text()):
            link = next(t for t in target if t)
            if re.match(r"^(https?:|mailto:|#)", link):
                continue
            path = (page.parent / link.split("#")[0]).resolve()  # inside the clone: a reader's, CI's
            if not (path.exists() and path.is_relative_to(ROOT)):
                broken.append(f"{page.relative_to(ROOT)}: {link}")
    assert broken == []


def test_every_shell_example_is_run_or_marked_as_needing_real_data():
    ci = (ROOT / ".ci" / "run").read_text()
    unmarked = []
    for page in PAGES:
        if page.name in ("api.md", "design.md"):  # api.md's python blocks run in test_api; design.md shows a layout
            continue
        for info, body in blocks(page):
            words = info.split()
            if (words[:1] or [""])[0] not in (*SHELL, "python") or not RUNNABLE.search(body):
                continue
            if "ci" in words[1:]:  # what CI runs: each command of the block, as written
                assert all(command.strip() in ci for line in body.strip().splitlines() for command in line.split("&&")), body
            elif "real-data" not in words[1:]:
                unmarked.append(f"{page.name}: {body.strip().splitlines()[0]}")
    assert unmarked == []


def test_every_gan_command_line_in_the_docs_parses():
    lines = [(page.name, line) for page in PAGES for info, body in blocks(page)
             if (info.split() or [""])[0] in SHELL for line in gan_lines(body)]
    assert len(lines) > 60
    failed = []
    for page, line in lines:
        try:
            parses(line)
        except (click.ClickException, AssertionError) as error:
            failed.append(f"{page}: {line}: {error}")
    assert failed == []


def command_examples(help_text: str) -> list[str]:
    """The `gan ...` lines under a docstring's Examples (or the app's one Example line)."""
    found = help_text.split("Example", 1)
    return gan_lines(found[1].split(":", 1)[1]) if len(found) == 2 else []


@pytest.mark.parametrize("name", sorted(typer.main.get_command(app).commands))
def test_every_command_help_ends_with_examples_that_parse(name):
    command = typer.main.get_command(app).commands[name]
    examples = command_examples(command.help or "")
    assert examples, f"gan {name} --help has no example"
    assert any(line.split()[1:2] == [name] for line in examples), f"gan {name} --help shows no `gan {name}` line"
    for line in examples:
        parses(line)


def test_the_app_help_ends_with_an_example_that_parses():
    examples = command_examples(typer.main.get_command(app).help)
    assert examples
    for line in examples:
        parses(line)
