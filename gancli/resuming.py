"""The resume rules (design note section 3), as a pure function of what a checkpoint holds and what
the user changes (`plan_resume`), and `resume_run`, which applies them to a checkpoint file.

- In place: the same objective from a run's `checkpoint.safetensors` (a folder with `log.jsonl`)
  continues that run (log lines past the checkpoint's epoch are dropped when training starts).
- A new child run, whose `parent` is the checkpoint, which stays untouched: a changed objective
  (--div, --alpha, --g-loss), or any other checkpoint file (a copy, an older snapshot, a lone
  `checkpoint.safetensors` outside a run folder), so that continuing never overwrites a file it was
  not asked to. It lives in the parent's runs folder (`runs` overrides; a lone copy's goes to the
  runs folder) and is named by `name` or by objective and time.
- Fixed when a run starts, refused when different: config.LOCKED_FIELDS; `batch_size` changes
  only between epochs; `--div` implies fgan.
- Epochs: `epochs` more, or until `until_epoch` in all; by default an interrupted run finishes its
  configured epochs and a finished one trains as many again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from gancli.checkpoint import Progress, read_checkpoint
from gancli.config import (
    LOCKED_FIELDS,
    TrainConfig,
    check_objective_options,
    classifier_domain,
    no_classifier_note,
    validate,
)
from gancli.distributed import SINGLE, World
from gancli.errors import GancliError
from gancli.runs import CHECKPOINT, check_not_training, is_run, new_run_dir, runs_root
from gancli.state import TrainState, restore_state


@dataclass(frozen=True)
class ResumePlan:
    """What a resume does: the config and progress it continues with, and what it said about them."""

    config: TrainConfig
    progress: Progress
    switched: bool  # the objective changed
    child: bool  # a new run whose parent is the checkpoint (switched, or not a run's latest)
    keep_optimizer: bool  # the optimizer moments carry over
    notes: tuple[str, ...]


def plan_resume(old: TrainConfig, changes: dict, progress: Progress, *, origin: str, in_run: bool, has_ema: bool,
                epochs: int | None = None, until_epoch: int | None = None, reset_optimizer: bool = False,
                world_size: int = 1) -> ResumePlan:
    """The rules, on values alone: `old` and `progress` from the checkpoint at `origin`, `changes` the
    TrainConfig fields given (None: not given), `in_run` whether it is a run's latest checkpoint,
    `has_ema` whether it holds a moving average, `world_size` the processes that continue it."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if epochs is not None and until_epoch is not None:
        raise GancliError("--epochs (more) and --until-epoch (in all) exclude each other", "give one")
    if (epochs is not None and epochs < 1) or (until_epoch is not None and until_epoch < 1):
        raise GancliError("--epochs and --until-epoch must be at least 1")
    if changes.get("d_arch") == old.discriminator_arch:  # naming D's own architecture changes nothing
        changes["d_arch"] = old.d_arch
    if bad := [f for f in LOCKED_FIELDS if f in changes and changes[f] != getattr(old, f)]:
        raise GancliError(f"cannot change {', '.join(bad)} on resume: fixed when the run started "
                          f"(the checkpoint has {', '.join(f'{f}={getattr(old, f)}' for f in bad)})",
                          "start a new run with `gan train`")
    if "objective" not in changes and "div" in changes:
        changes["objective"] = "fgan"
    notes = []
    domain = classifier_domain(changes["data"]) if "data" in changes else classifier_domain(old.data)
    if domain != classifier_domain(old.data) and old.eval_every:
        if domain is None:
            if "eval_every" not in changes:
                changes["eval_every"] = 0  # as for a new run on such data (make_config)
                notes.append(no_classifier_note(changes["data"]))
        else:  # log lines say which classifier scored them; best compares an epoch with those of the same
            notes.append(f"the per-epoch evaluation now scores on the {domain} classifier: "
                         f"its FIDs compare only with epochs scored on it")
    config = validate(dataclasses.replace(old, **changes))
    check_objective_options(config, changes)
    if config.batch_size != old.batch_size and progress.batch_in_epoch:
        raise GancliError(f"cannot change --batch-size in the middle of epoch {progress.epoch + 1}",
                          "finish the epoch first: gan resume CHECKPOINT --epochs 1")
    done = progress.epoch
    if until_epoch is not None and until_epoch <= done:
        raise GancliError(f"{origin} has completed {done} epochs already", f"pass --until-epoch above {done}, or --epochs N more")
    if epochs is not None:
        until_epoch = done + epochs
    elif until_epoch is None:
        until_epoch = config.epochs if done < config.epochs else done + config.epochs
    config = dataclasses.replace(config, epochs=until_epoch)

    if config.ema > 0 and not has_ema:
        progress = dataclasses.replace(progress, ema_updates=0)
        notes.append("the generator's moving average (--ema) starts now, from its current weights")
    elif has_ema and config.ema == 0:
        notes.append("the generator's moving average is dropped (--ema 0)")
    switched = config.trained_objective != old.trained_objective
    if switched:
        where = (f"batch {progress.batch_in_epoch} of epoch {done + 1} (the new objective trains the rest of that epoch)"
                 if progress.batch_in_epoch else f"epoch {done}")
        notes.append(f"switched {old.label} -> {config.label} at {where}; kept the networks; "
                     f"a new run records {origin} as its parent")
        progress = dataclasses.replace(progress, totals={}, objective_start=done)
    keep_optimizer = config.optimizer == old.optimizer and not reset_optimizer
    if config.optimizer != old.optimizer:
        notes.append(f"optimizer changed {old.optimizer} -> {config.optimizer}: moments start fresh")
    elif reset_optimizer:
        notes.append("optimizer moments dropped (--reset-optimizer)")
    elif switched:
        notes.append("kept the optimizer moments (--reset-optimizer drops them)")
    if progress.world_size != world_size:
        notes.append(f"trained on {progress.world_size} process(es), continuing on {world_size}: the same data "
                     "order and latents, but gradients are averaged in another order (and dropout draws differ), "
                     "so not bit-exactly what the same number would have trained")
    child = switched or not in_run
    if child and not switched:
        notes.append(f"{origin} is not a run's latest checkpoint: continuing in a new run that records it as its parent")
    return ResumePlan(config, progress, switched, child, keep_optimizer, tuple(notes))


def _above(folder: Path) -> Path:
    """The folder that holds `folder`, as written where it can be (`cd runs/a && gan resume
    checkpoint.safetensors` has `.` for its folder, whose written parent is itself)."""
    return folder.parent if folder.name not in ("", ".", "..") else folder.resolve().parent


@dataclass
class Resumed:
    """What `resume_run` prepared: the state to train, the run folder it writes, and what it decided."""

    state: TrainState
    run: Path
    switched: bool
    child: bool
    notes: list[str]


def resume_run(path: Path, changes: dict | None = None, *, epochs: int | None = None, until_epoch: int | None = None,
               runs: str | None = None, name: str | None = None, device: str = "cpu",
               reset_optimizer: bool = False, world: World = SINGLE) -> Resumed:
    """Read the checkpoint at `path`, plan the resume, restore the state and, for a child run, create
    its folder. A run that another process trains now is refused before anything is read."""
    path = Path(path)
    in_run = path.name == CHECKPOINT and is_run(path.parent)
    if in_run:
        world.on_main(lambda: check_not_training(path.parent))
    record = read_checkpoint(path)
    plan = plan_resume(record.config, changes or {}, record.progress, origin=str(path), in_run=in_run,
                       has_ema=record.G_ema is not None, epochs=epochs, until_epoch=until_epoch,
                       reset_optimizer=reset_optimizer, world_size=world.size)
    if not plan.child and name is not None:
        raise GancliError(f"--name names a new run, and this resume continues {path.parent} in place",
                          "drop --name, or switch objective to start a child run")
    state = restore_state(record, str(path), plan.config, plan.progress, parent=str(path) if plan.child else record.parent,
                          keep_optimizer=plan.keep_optimizer, device=device, world=world)
    if not plan.child:
        return Resumed(state, path.parent, False, False, list(plan.notes))
    root = Path(runs) if runs else (_above(path.parent) if is_run(path.parent) else runs_root())
    run = world.on_main(lambda: new_run_dir(root, name, plan.config.label))
    return Resumed(state, run, plan.switched, True, list(plan.notes))
