"""Stderr console, output checks and the one place where errors become exit codes."""

from __future__ import annotations

import functools
import os
import sys

import typer
from rich.console import Console

from gancli.errors import GancliError, QualityFailed, TrainingInterrupted, UsageError

console = Console(stderr=True)


def main_process() -> bool:
    """False in torchrun's processes other than rank 0, which train in silence (read without importing torch)."""
    return os.environ.get("RANK", "0") == "0"


def say(message: str) -> None:
    """One line on stderr, as written (no markup colouring)."""
    console.print(message, highlight=False)


def _fail(command: str, message: str, code: int) -> typer.Exit:
    # A plain write: rich would wrap a long message over several lines. Every rank of a torchrun
    # run meets the same error: rank 0 says it.
    if main_process():
        sys.stderr.write(f"gan {command}: {message}\n")
    return typer.Exit(code)


def user_errors(command: str):
    """GancliError -> one line and exit 1 (a UsageError: exit 2); a missed quality gate -> one line and
    exit 3; Ctrl-C -> exit 130; a closed pipe -> a quiet exit."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except GancliError as e:
                if os.environ.get("GANCLI_DEBUG") == "1":
                    raise
                raise _fail(command, f"error: {e}", 2 if isinstance(e, UsageError) else 1) from None
            except QualityFailed as e:
                raise _fail(command, str(e), 3) from None
            except TrainingInterrupted as e:
                raise _fail(command, f"interrupted: resumable checkpoint saved ({e.next_step})", 130) from None
            except KeyboardInterrupt:
                raise _fail(command, "interrupted", 130) from None
            except BrokenPipeError:
                # The reader went away (e.g. `| head`): silence the flush at exit, end quietly.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise typer.Exit(0) from None

        return run

    return wrap


def binary_output(dest: str | None) -> str:
    """Where a command writing images goes: `-` when stdout is not a terminal, never binary to a tty."""
    from gancli.streams import check_destination

    dest = dest or "-"
    if dest == "-" and sys.stdout.isatty():
        raise GancliError("refusing to write a binary samples stream to a terminal",
                          "pipe it (| gan score), redirect it (> out.safetensors), or pass -o DIR|FILE.safetensors")
    check_destination(dest)
    return dest


def write_output(samples, dest: str) -> None:
    """streams.write_samples, then the line saying where the images went (gan sample, filter, interpolate)."""
    from gancli.streams import write_samples

    write_samples(samples, dest)
    if dest != "-":
        say(f"wrote {len(samples)} images to {dest}")


def parse_floats(text: str, what: str, count: int | None = None) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise GancliError(f"{what} takes comma-separated numbers, got {text!r}") from None
    if count is not None and len(values) != count:
        raise GancliError(f"{what} takes {count} comma-separated numbers, got {text!r}")
    return values


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    values = parse_floats(text, what)
    if any(v != int(v) for v in values):
        raise GancliError(f"{what} takes comma-separated whole numbers, got {text!r}")
    return tuple(int(v) for v in values)


SHOWN_MISSING = 3  # class names on one console line; the JSON and the log have them all


def classes_text(present: int | None, total: int | None, missing: list | None) -> str:
    """'9/10 classes, no Sandal': a class coverage in words (`gan score`, the epoch line, `gan runs`)."""
    if present is None:
        return ""
    text = f"{present}/{total} classes" if total else f"{present} classes"
    if not missing:
        return text
    more = f" and {len(missing) - SHOWN_MISSING} more" if len(missing) > SHOWN_MISSING else ""
    return f"{text}, no {', '.join(map(str, missing[:SHOWN_MISSING]))}{more}"


def duration_text(seconds: float) -> str:
    """'1h05', '12 min', '40 s'."""
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}" if minutes >= 60 else f"{minutes} min" if minutes else f"{seconds:.0f} s"
