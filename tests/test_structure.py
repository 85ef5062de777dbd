"""The import graph (docs/design.md, section 1): layered, without cycles, and no inference path
reaching the training loop."""

import ast
import subprocess
import sys
from pathlib import Path

import gancli
from tests.conftest import gan_env

PACKAGE = Path(gancli.__file__).parent
# Lowest first: a module imports only from its own layer or lower ones, at the top or inside a function.
LAYERS = [
    {"gancli._version", "gancli.errors", "gancli.divergences"},
    {"gancli.config"},
    {"gancli.checkpoint", "gancli.distributed", "gancli.metrics", "gancli.quality", "gancli.models", "gancli.losses", "gancli.augment"},
    {"gancli.streams", "gancli.runs"},
    {"gancli.data", "gancli.inference"},
    {"gancli.features", "gancli.calibration", "gancli.plots"},
    {"gancli.sampling", "gancli.evaluation", "gancli.state", "gancli.export"},
    {"gancli.resuming", "gancli.training"},
    {"gancli.api"},
    {"gancli.tuning"},
    {"gancli.cli._io", "gancli.cli.options"},
    {"gancli.cli.train", "gancli.cli.sample", "gancli.cli.filter", "gancli.cli.score", "gancli.cli.compare",
     "gancli.cli.calibrate", "gancli.cli.runs", "gancli.cli.tune", "gancli.cli.export"},
    {"gancli.cli", "gancli", "gancli.__main__"},
]
TRAINING = {"gancli.training", "gancli.state", "gancli.resuming"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST) -> set[str]:
    """The gancli modules a syntax tree imports, anywhere in it (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gancli":
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in TREES} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "gancli"}
    return found


TREES = {module_name(p): ast.parse(p.read_text()) for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imported(tree) - {name} for name, tree in TREES.items()}


def reachable(start: set[str]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += GRAPH.get(name, ())
    return seen


def test_every_module_has_a_layer():
    assert set(GRAPH) == set().union(*LAYERS)


def test_no_module_imports_a_higher_one():
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    upward = [(a, b) for a, deps in GRAPH.items() for b in deps if layer[b] > layer[a]]
    assert upward == []


def test_the_import_graph_has_no_cycle():
    assert [name for name in GRAPH if name in reachable(GRAPH[name])] == []


INFERENCE_RUN = """
import sys
from typer.testing import CliRunner
from gancli.cli import app
checkpoint, data, out = sys.argv[1:4]
commands = (["sample", checkpoint, "-n", "8", "-o", f"{out}/s.safetensors"],
            ["interpolate", checkpoint, "--pairs", "1", "--steps", "2", "-o", f"{out}/i.png"],
            ["filter", f"{out}/s.safetensors", "--ckpt", checkpoint, "--keep-top", "0.5", "-o", f"{out}/f.safetensors"],
            ["calibrate", checkpoint, "--ref", data, "-n", "16", "-o", f"{out}/c.safetensors"],
            ["score", f"{out}/s.safetensors", "--ref", data, "--features", "mnist", "-n", "8"])
for command in commands:
    result = CliRunner().invoke(app, [*command, "--device", "cpu"])
    assert result.exit_code == 0, (command, result.output)
print(" ".join(sorted(name for name in sys.modules if name.startswith("gancli"))))
"""


def test_no_inference_path_imports_the_training_loop(checkpoints, tiny_data, tmp_path):
    """What the inference commands load when they run, in a process of their own, helpers included."""
    assert reachable({"gancli.inference", "gancli.sampling", "gancli.calibration", "gancli.features"}) & TRAINING == set()
    done = subprocess.run([sys.executable, "-c", INFERENCE_RUN, str(checkpoints / "checkpoint.safetensors"), str(tiny_data),
                           str(tmp_path)], capture_output=True, text=True, timeout=300, env=gan_env(tmp_path))
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert {"gancli.inference", "gancli.api", "gancli.calibration"} <= loaded and loaded & TRAINING == set()


def test_training_is_the_loop_alone():
    assert len((PACKAGE / "training.py").read_text().splitlines()) <= 400
