"""`gan tune`: a hyper-parameter search over gancli runs, on Optuna.

A search space is a config file (`gan train --config`'s keys: the options every trial shares) with a
`[search]` table of the options searched, each a list of choices or a range `{low, high, log, step}`,
and optionally `when = {KEY = VALUE or [VALUES]}`: searched only where an option sampled or fixed
before it has that value (`alpha` only for `div = "alpha"`).

Each trial is an ordinary run, `trial-NNNN` in the study's runs folder, trained by a worker process
of its own that reports the run's per-epoch evaluated FID to Optuna as the intermediate value, so
that the pruner stops a poor trial after a few epochs; the trial's value is the last (or best)
evaluated FID. One coordinator process asks Optuna for each trial (so that the trial count never
overshoots on one machine) and starts the workers; the study lives in an Optuna storage (a SQLite
file beside the runs by default, a journal file on a shared disk for several machines), so that
a stopped search continues where it stopped: a trial interrupted by Ctrl-C keeps its checkpoint
and is resumed, never counted twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gancli.config import (
    TrainConfig,
    config_fields,
    config_fields_from_toml,
    config_toml,
    file_defaults,
    make_config,
)
from gancli.errors import GancliError, UsageError

SAMPLERS = ("tpe", "random", "cmaes")
PRUNERS = ("median", "hyperband", "none")
TARGETS = ("last", "best")
# a trial left RUNNING by a coordinator that was killed (not Ctrl-C'd) is taken over once its run has
# been unlocked and untouched this long: a worker that is starting holds no lock yet
STALE_S = 1800
TRIAL_PREFIX = "trial-"
MIN_FOR_IMPORTANCES = 4  # complete trials before the figure shows the options' importances


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise GancliError("gan tune needs Optuna", "pip install 'gancli[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# --- the search space ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """One searched option: `choices`, or a range low..high (log-uniform with `log`, on a grid of `step`),
    sampled only where the options named in `when` have one of their listed values."""
    name: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False
    when: tuple[tuple[str, tuple], ...] = ()


@dataclass(frozen=True)
class Space:
    fixed: dict
    params: tuple[Param, ...]
    text: str  # the file as written: stored with the study, which refuses another space


def _param(name: str, entry, source: str, fixed: dict, earlier: dict[str, Param]) -> Param:
    """One [search] entry, its values checked with the fixed options as a config file's would be,
    its `when` against what is fixed or searched above it (a condition that can never hold is refused)."""
    where = f"{source} [search] {name}"
    if not isinstance(entry, (list, dict)):
        raise UsageError(f"{where}: a searched option is a list of choices or a table {{low, high}}, got {entry!r}",
                         "put options every trial shares above [search]")
    table = {"choices": entry} if isinstance(entry, list) else dict(entry)
    unknown = set(table) - {"choices", "low", "high", "log", "step", "when"}
    if unknown:
        raise UsageError(f"{where}: unknown key {sorted(unknown)[0]!r}", "a range takes low, high, log, step and when")
    when = table.pop("when", {})
    if not isinstance(when, dict) or not when and "when" in entry:
        raise UsageError(f"{where}: when is a table of conditions, e.g. when = {{div = \"alpha\"}}")
    conditions = tuple((key, tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else (v,))
                       for key, v in when.items())
    for key, allowed in conditions:
        if key in fixed and fixed[key] not in allowed:
            raise UsageError(f"{where}: never searched: when = {{{key} = {list(allowed)}}}, and {key} is fixed to {fixed[key]!r}")
        if key in earlier and earlier[key].choices and (bad := [v for v in allowed if v not in earlier[key].choices]):
            raise UsageError(f"{where}: when = {{{key} = ...}}: {bad[0]!r} is not one of {key}'s choices")
        if key not in fixed and key not in earlier:
            raise UsageError(f"{where}: when names {key}, which is neither fixed nor searched above it")

    def check(value) -> None:
        config_fields({**fixed, name: list(value) if isinstance(value, tuple) else value}, where)

    if "choices" in table:
        choices = table["choices"]
        if set(table) != {"choices"} or not isinstance(choices, list) or len(choices) < 2:
            raise UsageError(f"{where}: choices are a list of at least two values, and nothing else")
        for choice in choices:
            check(choice)
        return Param(name, choices=tuple(tuple(c) if isinstance(c, list) else c for c in choices), when=conditions)
    if not {"low", "high"} <= set(table):
        raise UsageError(f"{where}: a range needs low and high")
    default = file_defaults()[name]  # a known key: check() above refuses any other
    if isinstance(default, (bool, str, tuple)):
        raise UsageError(f"{where}: {name} takes a list of choices, not a range")
    low, high, log, step = table["low"], table["high"], table.get("log", False), table.get("step")
    for value in (low, high):
        check(value)
    integer = isinstance(default, int)
    if not isinstance(log, bool):
        raise UsageError(f"{where}: log = {log!r}: log is true or false")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int if integer else (int, float)) or step <= 0):
        raise UsageError(f"{where}: step = {step!r}: a step is a number above 0" + (", whole for a whole option" if integer else ""))
    if not low < high or (log and low <= 0) or (log and step is not None):
        raise UsageError(f"{where}: a range needs low < high (and low > 0 with log = true, which takes no step)")
    return Param(name, low=low, high=high, log=log, step=step, integer=integer, when=conditions)


def parse_space(text: str, source: str) -> Space:
    """SPACE.toml -> Space: the fixed options checked as a config file's, each searched one checked
    value by value with them; an error names the key (a UsageError, exit 2)."""
    import tomllib

    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{source} is not TOML: {error}") from None
    search = values.pop("search", None)
    if not isinstance(search, dict) or not search:
        raise UsageError(f"{source} has no [search] table",
                         "add one: [search] followed by e.g. lr = {low = 1e-4, high = 1e-3, log = true}")
    fixed = config_fields(values, source)
    if both := set(values) & set(search):
        raise UsageError(f"{source}: {sorted(both)[0]} is both fixed and searched")
    params: dict[str, Param] = {}
    for name, entry in search.items():
        params[name] = _param(name, entry, source, fixed, dict(params))
    if "objective" not in fixed and "objective" not in search:
        raise UsageError(f"{source} names no objective", 'add objective = "fgan" (or a list of them under [search])')
    return Space(fixed, tuple(params.values()), text)


def check_evaluated(space: Space) -> None:
    """Every trial must be evaluated per epoch: its FID is what is minimised and what the pruner reads."""
    from gancli.config import classifier_domain

    searched = {p.name for p in space.params}
    data = space.fixed.get("data", TrainConfig.data)
    if "data" not in searched and classifier_domain(data) is None:
        raise UsageError(f"gan tune minimises the per-epoch evaluated FID, and {data} has no evaluation",
                         "tune on mnist or fashion-mnist data (their classifiers evaluate every epoch)")
    if "eval_every" not in searched and space.fixed.get("eval_every") == 0:
        raise UsageError("gan tune minimises the per-epoch evaluated FID: eval_every = 0 turns it off")


def _applies(param: Param, values: dict) -> bool:
    return all(values.get(key) in allowed for key, allowed in param.when)


def suggest(trial, space: Space) -> dict:
    """The trial's options: the fixed ones, and each searched one that applies, sampled by `trial`
    (Optuna's define-by-run API); tuple choices travel through Optuna as their text."""
    values = dict(space.fixed)
    for p in space.params:
        if not _applies(p, values):
            continue
        if p.choices:
            shown = [",".join(map(str, c)) if isinstance(c, tuple) else c for c in p.choices]
            picked = trial.suggest_categorical(p.name, shown)
            values[p.name] = p.choices[shown.index(picked)]
        elif p.integer:
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    return values


def trial_config(values: dict) -> tuple[str, dict]:
    """(objective, TrainConfig fields) of a trial's options, read as a config file's (`lr` meaning both
    learning rates); checked whole (make_config): a combination no run can train is an error."""
    fields = config_fields(values, "the trial's options")
    objective = fields.pop("objective")
    config = make_config(objective, **fields)
    if not config.eval_every:
        raise UsageError(f"gan tune minimises the per-epoch evaluated FID, and {config.data} has no evaluation",
                         "tune on mnist or fashion-mnist data (their classifiers evaluate every epoch)")
    return objective, fields


# --- the study -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """What `gan tune` was asked for, less the space."""
    study: str
    runs: Path
    storage: str
    trials: int
    workers: int = 1
    sampler: str = "tpe"
    pruner: str = "median"
    target: str = "last"
    startup_trials: int = 5  # the median pruner's: complete trials before it prunes
    warmup_epochs: int = 2  # evaluated epochs before a trial can be pruned
    seed: int = 0  # the sampler's
    data_dir: str | None = None
    device: str = "auto"


def default_storage(runs: Path) -> str:
    return f"sqlite:///{(runs / 'tune.db').resolve()}"


def open_storage(url: str, create: bool = True):
    """An Optuna storage from `--storage`: a journal file (FILE.log, FILE.journal: several machines on a
    shared disk), or any RDB URL Optuna takes (sqlite:///FILE, postgresql://...). Without `create`, a
    file that is not there is an error (a report creates nothing)."""
    optuna = require_optuna()
    local = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url if "://" not in url else None
    if local is not None and not create and not Path(local).is_file():
        raise GancliError(f"no study storage at {local}", "run gan tune SPACE.toml first, or pass --storage and --runs")
    if url.endswith((".log", ".journal")) and "://" not in url:
        from optuna.storages.journal import JournalFileBackend

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(url))
    if url.startswith("sqlite:///"):
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        # workers write their reports at once: wait for the file's lock rather than fail
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    if "://" not in url:
        raise UsageError(f"--storage {url}: not an RDB URL nor a journal file",
                         "e.g. sqlite:///runs/study/tune.db, or /shared/study.journal")
    return optuna.storages.RDBStorage(url)


def make_pruner(settings: Settings, epochs: int):
    optuna = require_optuna()
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials, n_warmup_steps=settings.warmup_epochs)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, settings.warmup_epochs), max_resource=epochs)
    return optuna.pruners.NopPruner()


def make_sampler(settings: Settings):
    optuna = require_optuna()
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    if settings.sampler == "cmaes":  # CMA-ES knows ranges; choices fall back to random, which Optuna says
        return optuna.samplers.CmaEsSampler(seed=settings.seed, n_startup_trials=settings.startup_trials)
    return optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=settings.startup_trials)


def load_study(settings: Settings, space: Space | None):
    """The study with `settings`' sampler and pruner: created on first use with `space` and the
    target recorded, an existing one refusing another space or target; without `space`, only loaded
    (a report, a worker)."""
    optuna = require_optuna()
    storage = open_storage(settings.storage, create=space is not None)
    if space is None:
        try:
            study = optuna.load_study(storage=storage, study_name=settings.study)
        except KeyError:
            raise GancliError(f"no study {settings.study!r} in {settings.storage}", "run gan tune SPACE.toml first") from None
        space = study_space(study, f"the space of study {settings.study}")
    else:
        study = optuna.create_study(direction="minimize", load_if_exists=True, storage=storage, study_name=settings.study)
        recorded = study.user_attrs.get("space"), study.user_attrs.get("target")
        if recorded == (None, None):
            study.set_user_attr("space", space.text)
            study.set_user_attr("target", settings.target)
        elif recorded[0] != space.text:
            raise GancliError(f"study {settings.study!r} in {settings.storage} was created with another space",
                              "give the same SPACE.toml, or start another study with --study NAME")
        elif recorded[1] != settings.target:
            raise GancliError(f"study {settings.study!r} minimises the {recorded[1]} evaluated FID, not the {settings.target}",
                              f"pass --target {recorded[1]}, or start another study with --study NAME")
    study.pruner = make_pruner(settings, int(space.fixed.get("epochs", TrainConfig.epochs)))
    study.sampler = make_sampler(settings)
    return study


def study_space(study, source: str) -> Space:
    return parse_space(study.user_attrs["space"], source)


def run_of(settings: Settings, number: int) -> Path:
    return settings.runs / f"{TRIAL_PREFIX}{number:04d}"


def _adoptable(study, settings: Settings) -> list:
    """RUNNING trials no worker runs: Ctrl-C'd ones (marked so), and those of a killed coordinator
    whose run has been unlocked and untouched for STALE_S."""
    from optuna.trial import TrialState

    from gancli.runs import training_now

    found = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        run = run_of(settings, trial.number)
        if run.is_dir() and training_now(run):
            continue
        touched = max((p.stat().st_mtime for p in run.iterdir()), default=0) if run.is_dir() else 0
        started = trial.datetime_start.timestamp() if trial.datetime_start else 0
        if trial.user_attrs.get("interrupted") or time.time() - max(touched, started) > STALE_S:
            found.append(trial)
    return found


def _worker_command(settings: Settings, number: int, threads: int) -> list[str]:
    """`python -m gancli.tuning SETTINGS-JSON NUMBER THREADS`: the worker's `_main`."""
    given = dataclasses.asdict(settings) | {"runs": str(settings.runs)}
    return [sys.executable, "-m", "gancli.tuning", json.dumps(given), str(number), str(threads)]


def run_study(space: Space, settings: Settings, notify: Callable[[str], None]) -> dict:
    """Run trials until the study holds `settings.trials` (interrupted ones resumed first), `workers`
    at a time; returns `report`. Ctrl-C: every running trial saves its checkpoint, is marked
    interrupted, and the next call resumes it; then TrainingInterrupted's exit 130."""
    optuna = require_optuna()
    from optuna.trial import TrialState

    from gancli.errors import TrainingInterrupted

    check_evaluated(space)
    if "data" not in {p.name for p in space.params}:  # data that is not there fails here, not in every trial
        from gancli.config import classifier_domain
        from gancli.data import load_images

        data = space.fixed.get("data", TrainConfig.data)
        for source in (data, f"{classifier_domain(data)}:test"):
            load_images(source, settings.data_dir)
    settings.runs.mkdir(parents=True, exist_ok=True)
    study = load_study(settings, space)
    # a continued study draws on from where it stopped, not the first trials' options again
    study.sampler = make_sampler(dataclasses.replace(settings, seed=settings.seed + len(study.trials)))
    (settings.runs / "space.toml").write_text(space.text)
    import torch

    # the cores this process may use (OMP_NUM_THREADS, else all), split evenly between the workers
    threads = max(1, torch.get_num_threads() // settings.workers)
    running: dict[int, tuple[subprocess.Popen, object]] = {}
    adopted = _adoptable(study, settings)
    queue = [optuna.trial.Trial(study, frozen._trial_id) for frozen in adopted]
    for trial in queue:
        notify(f"trial {trial.number}: interrupted before, resumed")
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.number not in {t.number for t in adopted}:
            notify(f"trial {frozen.number}: running elsewhere, or its coordinator was killed: it counts, and is taken "
                   f"over once its run has been unlocked and untouched for {STALE_S // 60} min")

    def start(trial) -> None:
        trial.set_user_attr("interrupted", False)
        trial.set_user_attr("threads", threads)  # CPU results depend on it: a bit-exact rerun needs as many
        # in a session of its own: a terminal's Ctrl-C reaches the coordinator alone, which asks each
        # worker once to stop (a second signal would stop a worker without saving)
        running[trial.number] = (subprocess.Popen(_worker_command(settings, trial.number, threads),
                                                  start_new_session=True), trial)

    def counted() -> int:
        return len(study.get_trials(deepcopy=False, states=tuple(s for s in TrialState if s != TrialState.WAITING)))

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # Slurm's time limit, scancel: as Ctrl-C
    try:
        while True:
            while len(running) < settings.workers and (queue or counted() < settings.trials):
                if queue:
                    start(queue.pop(0))
                    continue
                trial = study.ask()
                try:
                    values = suggest(trial, space)
                    trial_config(values)
                except GancliError as error:  # a combination no run can train: a failed trial, said why
                    trial.set_user_attr("reason", error.message)
                    study.tell(trial, state=TrialState.FAIL)
                    notify(f"trial {trial.number}: FAIL ({error.message})")
                    continue
                notify(f"trial {trial.number}: {_params_text(trial.params)}")
                start(trial)
            if not running:
                break
            _reap(running, study, notify)
            time.sleep(0.2)
    except KeyboardInterrupt:
        for process, _ in running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # each worker saves its checkpoint and exits
        for number, (process, trial) in running.items():
            try:
                process.wait()
            except KeyboardInterrupt:  # a second Ctrl-C: at once (the last epoch's checkpoints stay)
                for other, _ in running.values():
                    other.kill()
                process.wait()
            if _state(study, number) == TrialState.RUNNING:
                trial.set_user_attr("interrupted", True)
        raise TrainingInterrupted(settings.runs, next_step="run the same gan tune again: it resumes the trials that "
                                  "were running from their checkpoints") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    return report(study, settings)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _state(study, number: int):
    return study.get_trials(deepcopy=False)[number].state


WORKER_INTERRUPTED = 130
WORKER_DONE = 0
WORKER_TAKEN = 75  # another process trains or has ended the trial (two coordinators adopted it): not a failure


def _reap(running: dict, study, notify: Callable[[str], None]) -> None:
    """Forget the workers that ended; one that crashed fails its trial, with its exit status; one
    that was interrupted stops the study (KeyboardInterrupt), as Ctrl-C would."""
    from optuna.trial import TrialState

    for number, (process, trial) in list(running.items()):
        code = process.poll()
        if code is None:
            continue
        del running[number]
        if code == WORKER_INTERRUPTED:
            trial.set_user_attr("interrupted", True)
            raise KeyboardInterrupt
        if code == WORKER_TAKEN:
            notify(f"trial {number}: another process has taken it over; left to that one")
            continue
        if code != WORKER_DONE and _state(study, number) == TrialState.RUNNING:
            trial.set_user_attr("reason", f"the worker exited with status {code}")
            study.tell(number, state=TrialState.FAIL)
            notify(f"trial {number}: FAIL (the worker exited with status {code})")


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


class _Pruned(Exception):
    pass


class _Taken(Exception):
    """The trial is another process's (WORKER_TAKEN)."""


def run_trial(settings: Settings, number: int) -> None:
    """A worker: train trial `number`'s run (resume it when it exists), report each evaluated FID,
    stop when the pruner says so, and tell Optuna the outcome: COMPLETE with the last or best
    evaluated FID, PRUNED, or FAIL with the reason (a diverged run among them). Ctrl-C leaves the
    trial RUNNING with its checkpoint saved (TrainingInterrupted, from the loop)."""
    optuna = require_optuna()
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from gancli import api
    from gancli.checkpoint import read_header
    from gancli.inference import resolve_device
    from gancli.runs import CHECKPOINT, comparable_fids, read_log, run_summary, training_now
    from gancli.state import resolved_precision

    study = load_study(settings, None)
    runs, target = settings.runs, settings.target
    frozen = study.get_trials(deepcopy=False)[number]
    run = run_of(settings, number)
    if frozen.state != TrialState.RUNNING or training_now(run):
        raise _Taken
    trial = optuna.trial.Trial(study, frozen._trial_id)
    # the whole config, kept with the trial when it first starts: BEST.toml is written from it where the run
    # is gone, and a run trained again from it is the same run whatever defaults changed meanwhile
    stored = frozen.user_attrs.get("config")
    if stored is None:  # the options the coordinator drew, drawn again from the stored params
        values = suggest(optuna.trial.FixedTrial(frozen.params), study_space(study, "the study's space"))
        drawn_objective, drawn = trial_config(values)
        config = make_config(drawn_objective, **drawn)
        # --precision auto as this worker resolves it, which the run's checkpoint will record too
        stored = config_toml(resolved_precision(config, resolve_device(settings.device)))
        trial.set_user_attr("config", stored)
    fields = config_fields_from_toml(stored, f"trial {number}'s config")
    objective = fields.pop("objective")

    say = lambda message: print(message, file=sys.stderr, flush=True)

    def trained() -> None:  # kept with the trial: a study outlives its runs (a fresh clone, a cleaned disk)
        summary = run_summary(run) if (run / CHECKPOINT).is_file() else {"epochs": 0, "seconds": 0.0}
        trial.set_user_attr("epochs", summary["epochs"])
        trial.set_user_attr("seconds", summary["seconds"])

    def end(state: TrialState, reason: str) -> None:
        trained()
        trial.set_user_attr("reason", reason)
        study.tell(number, state=state)
        say(f"trial {number}: {state.name} ({reason})")

    def on_epoch(state, record):
        if "fid" not in record:
            return
        if record["epoch"] not in frozen.intermediate_values:  # a run trained again (bit-exact) reports each epoch once
            trial.report(record["fid"], record["epoch"])
        say(f"trial {number}: epoch {record['epoch']}/{state.config.epochs}, FID {record['fid']:.2f}")
        if trial.should_prune():
            raise _Pruned(f"FID {record['fid']:.2f} at epoch {record['epoch']}: the {settings.pruner} pruner stopped it")

    header = read_header(run / CHECKPOINT)
    try:
        if header is not None and header.progress.epoch >= header.config.epochs and not header.progress.batch_in_epoch:
            pass  # trained to the end by a worker that stopped before it told the outcome
        elif header is not None:
            api.resume(run, data_dir=settings.data_dir, device=settings.device, callbacks=api.Callbacks(on_epoch=on_epoch))
        else:
            api.train(objective, data_dir=settings.data_dir, runs=str(runs), name=run.name, device=settings.device,
                      callbacks=api.Callbacks(on_epoch=on_epoch), **fields)
    except _Pruned as pruned:
        return end(TrialState.PRUNED, str(pruned))
    except UpdateFinishedTrialError:  # another process told the outcome meanwhile
        raise _Taken from None
    except GancliError as error:  # the divergence guard among them: a result, not a crash
        if training_now(run):  # the lock was taken between the check above and the training's own
            raise _Taken from None
        return end(TrialState.FAIL, error.message)
    evaluated = comparable_fids(read_log(run))
    if not evaluated:
        return end(TrialState.FAIL, "no epoch was evaluated to a finite FID")
    value = evaluated[-1]["fid"] if target == "last" else min(r["fid"] for r in evaluated)
    trained()
    study.tell(number, value)
    say(f"trial {number}: COMPLETE, {target} FID {value:.2f}")


# --- the report ----------------------------------------------------------------------------------

def report(study, settings: Settings) -> dict:
    """The study as `gan tune --json` prints it; writes BEST.toml (the best trial's config, which
    `gan train --config` reruns) when there is a best trial."""
    from optuna.trial import TrialState

    from gancli.checkpoint import read_header
    from gancli.runs import CHECKPOINT, run_summary

    trials = []
    for t in study.get_trials(deepcopy=False):
        run = run_of(settings, t.number)
        # a run that is there says how far it is; else what its trial recorded when it ended
        summary = run_summary(run) if (run / CHECKPOINT).is_file() else None
        kept = summary or {"epochs": t.user_attrs.get("epochs", 0), "seconds": t.user_attrs.get("seconds", 0.0)}
        trials.append({"number": t.number, "state": t.state.name, "params": t.params, "value": t.value,
                       "epochs": kept["epochs"], "seconds": kept["seconds"], "reason": t.user_attrs.get("reason"),
                       "run": str(run) if summary else None})
    target = study.user_attrs.get("target", settings.target)  # the study's own, whatever --target says
    result = {"study": settings.study, "storage": settings.storage, "target": target, "trials": trials, "best": None}
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if complete:
        best = min(complete, key=lambda t: t.value)
        run = run_of(settings, best.number)
        header = read_header(run / CHECKPOINT)
        config_path = settings.runs / "BEST.toml"
        threads = best.user_attrs.get("threads")
        # the run's own config (its image shape is its data's); else the one its trial recorded
        config = config_toml(header.config) if header is not None else best.user_attrs.get("config")
        if config is not None and settings.runs.is_dir():  # a report on a study elsewhere writes nothing
            config_path.write_text(
                f"# the best trial of study {settings.study}: trial {best.number}, {target} evaluated FID "
                f"{best.value:.4g} ({run}), trained with {threads} torch threads: on a CPU,\n"
                f"# OMP_NUM_THREADS={threads} gan train --config {config_path} repeats it bit-exactly\n{config}")
        result["best"] = {"number": best.number, "params": best.params, "value": best.value, "run": str(run),
                          "config": str(config_path) if config_path.is_file() else None, "threads": threads}
    return result


def read_space(path: Path) -> Space:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read the space file {path}: {getattr(error, 'strerror', None) or error}") from None
    return parse_space(text, str(path))


def plot_study(study, output: Path) -> Path:
    """plots.plot_tuning of the study: its trials' values and (with MIN_FOR_IMPORTANCES complete trials)
    the searched options' importances."""
    from gancli.plots import plot_tuning

    optuna = require_optuna()
    history = []
    for t in study.get_trials(deepcopy=False):
        value = t.value if t.value is not None else (t.intermediate_values[max(t.intermediate_values)]
                                                     if t.intermediate_values else None)
        history.append({"number": t.number, "state": t.state.name, "value": value})
    importances = {}
    from optuna.trial import TrialState

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= MIN_FOR_IMPORTANCES:
        import warnings

        with warnings.catch_warnings():  # the evaluator's notes on small studies and its experimental status
            warnings.simplefilter("ignore")
            try:  # PED-ANOVA: Optuna's own, no scikit-learn (fANOVA's random forests need it)
                importances = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
            except (RuntimeError, ValueError):  # no searched option varies among the complete trials
                importances = {}
    return plot_tuning(history, importances, output, study.user_attrs.get("target", "last"))


def _main(argv: list[str]) -> int:
    """The worker process's entry (run_study starts it): exit 0 when it told the trial's outcome, 130 on Ctrl-C."""
    from gancli.errors import TrainingInterrupted

    given, number, threads = argv
    signal.signal(signal.SIGTERM, _stop_once)
    import torch

    torch.set_num_threads(int(threads))
    values = json.loads(given)
    try:
        run_trial(Settings(**values | {"runs": Path(values["runs"])}), int(number))
    except (TrainingInterrupted, KeyboardInterrupt):
        return WORKER_INTERRUPTED
    except _Taken:
        return WORKER_TAKEN
    return WORKER_DONE


def _stop_once(signum, frame):
    """SIGTERM (from the coordinator, or Slurm's to every process) -> one SIGINT: the training saves its
    checkpoint after the current step; a second SIGTERM (both came) changes nothing."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.kill(os.getpid(), signal.SIGINT)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
