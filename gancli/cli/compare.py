"""`gan compare`: a candidate's `gan score --json` against a baseline's, for CI."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from gancli.cli._io import user_errors
from gancli.cli.options import AsJson
from gancli.errors import GancliError, QualityFailed


def tolerance(text: str) -> float:
    """`10%` or `0.1` -> 0.1; a usage error (exit 2) otherwise."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise typer.BadParameter(f"takes a fraction or a percentage, e.g. 10% or 0.1, not {text!r}") from None
    if not value >= 0:
        raise typer.BadParameter("must be 0 or more")
    return value


def metric_list(text: str | None) -> str | None:
    """A usage error (exit 2) for a metric gan compare does not know."""
    from gancli.quality import DIRECTION

    unknown = [m for m in (text or "").split(",") if text and m.strip() not in DIRECTION]
    if unknown:
        raise typer.BadParameter(f"unknown metric {unknown[0]!r}; choose among {', '.join(DIRECTION)}")
    return text


def read_result(source: str) -> dict:
    """A `gan score --json` result from a file or stdin, checked (quality.check_result)."""
    from gancli.quality import check_result

    if source == "-":
        raw, origin = sys.stdin.buffer.read(), "stdin"
    else:
        path = Path(source)
        if not path.is_file():
            raise GancliError(f"no such file: {source}", "pass a `gan score --json` output, or - for stdin")
        raw, origin = path.read_bytes(), source
    try:
        result = json.loads(raw.decode())
    except UnicodeDecodeError:  # a checkpoint, a PNG, a samples stream
        raise GancliError(f"{origin} is a binary file, not JSON", "pass a `gan score --json` output") from None
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        raise GancliError(f"{origin} is not JSON", "write it with `gan score --json`") from None
    return check_result(result, origin)


def _table(changes) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="gan compare (worse by: relative to the baseline)")
    for column in ("metric", "baseline", "candidate", "worse by", ""):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for c in changes:
        table.add_row(c.metric, f"{c.baseline:.4f}", f"{c.candidate:.4f}", f"{c.worse_by:+.1%}", "REGRESSED" if c.regressed else "ok")
    Console(file=sys.stdout).print(table)


@user_errors("compare")
def compare(
    baseline: Annotated[str, typer.Argument(help="The baseline: a `gan score --json` output file, or - (stdin).")],
    candidate: Annotated[str, typer.Argument(help="The candidate, the same way.")],
    max_regression: Annotated[float, typer.Option("--max-regression", parser=tolerance, metavar="TOLERANCE",
        help="How much worse than the baseline a metric may get, relative to it: 10% or 0.1.")] = "10%",
    metrics: Annotated[str | None, typer.Option("--metrics", callback=metric_list,
        help="Comma-separated metrics to check, e.g. fid,precision \\[default: fid, kid_mean, precision, recall, density, "
             "coverage, classes_present].")] = None,
    as_json: AsJson = False,
):
    """Compare two score results: exit 3 when a metric regressed past the tolerance.

    FID and KID regress upwards; precision, recall, density, coverage and classes present
    downwards. Results of different protocols (extractor, weights, counts, reference, k) are
    refused (exit 1): their numbers do not compare.

    Examples:
      gan compare baseline.json candidate.json --max-regression 10%
      gan compare baseline.json candidate.json --metrics fid,precision --max-regression 25%
      gan sample -n 2000 | gan score --features mnist -n 2000 --json | gan compare baseline.json -
    """
    from dataclasses import asdict

    from gancli.quality import DIRECTION
    from gancli.quality import compare as changes_between

    if baseline == candidate == "-":
        raise GancliError("only one of the two results can come from stdin")
    chosen = tuple(m.strip() for m in metrics.split(",")) if metrics else DIRECTION
    changes = changes_between(read_result(baseline), read_result(candidate), max_regression, tuple(chosen))
    if as_json:
        print(json.dumps([asdict(c) for c in changes]))
    else:
        _table(changes)
    regressed = [f"{c.metric} {c.baseline:.4g} -> {c.candidate:.4g} ({c.worse_by:.1%} worse)" for c in changes if c.regressed]
    if regressed:
        raise QualityFailed(regressed, f"regressed past {max_regression * 100:g}%")
