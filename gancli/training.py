"""The training loop: importable, no Typer, no printing; progress goes through callbacks.

Randomness comes from three sources, all saved in every checkpoint so that a run continues
bit-exactly: `data_rng` draws each epoch's permutation (its state at the epoch's start is
saved, so an interrupted epoch redraws the same order), `noise_rng` draws z and the
gradient-penalty mixing weights, and torch's global generator drives dropout.

Under torchrun (distributed.py) every rank draws the whole global batch's order and noise from
the same generators and trains on its part, so that those do not depend on the number of
ranks; dropout draws from each rank's own global generator, all of which the checkpoint keeps.
Rank 0 alone writes; a checkpoint written by N ranks loads in one process.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gancli import checkpoint as ckpt
from gancli import losses
from gancli.config import LOCKED_FIELDS, TrainConfig, check_objective_options, mnist_data, validate
from gancli.distributed import SINGLE, World, average_gradients
from gancli.errors import GancliError, TrainingInterrupted
from gancli.models import build_models, generate_images, to_unit_range
from gancli.runs import (
    BEST,
    CHECKPOINT,
    DIVERGED,
    LOG,
    append_log,
    marked_training,
    new_run_dir,
    read_log,
    runs_root,
    set_latest,
    truncate_log,
)
from gancli.streams import save_png_grid

GRID_SIZE = 64
# Fields of a log record that measure the machine rather than the run.
TIMING_FIELDS = ("seconds", "images_per_s", "eval_seconds")
# Steps between reads of the per-step scalars, by device type (one host synchronisation each): on a
# CPU a read costs nothing; on a GPU, 32 steps are about the progress bar's pace for the course MLP.
READ_EVERY = {"cpu": 1, "cuda": 32}


@dataclass
class TrainState:
    config: TrainConfig
    G: torch.nn.Module
    D: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    data_rng: torch.Generator
    noise_rng: torch.Generator
    epoch_start_rng: torch.Tensor
    device: torch.device
    epoch: int = 0  # completed epochs
    step: int = 0  # discriminator steps so far
    batch_in_epoch: int = 0  # > 0 only in a checkpoint written by Ctrl-C
    totals: dict = field(default_factory=dict)  # running sums of the current epoch
    parent: str | None = None
    objective_start: int = 0  # the epoch the current objective started at (0, or a switch's): the warm-up counts from it
    G_ema: torch.nn.Module | None = None  # the moving average of G's weights (config.ema > 0)
    ema_updates: int = 0  # generator steps averaged into G_ema: its warm-up counts them
    world: World = SINGLE  # the ranks training this run together (torchrun)

    @property
    def generator(self) -> torch.nn.Module:
        """The generator that samples, grids and evaluations use: the moving average when there is one."""
        return self.G if self.G_ema is None else self.G_ema


def resolve_device(device: str) -> torch.device:
    """auto, cpu, cuda or cuda:N (the GPU torchrun gives a rank) as a torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.split(":")[0] == "cuda" and not torch.cuda.is_available():
        raise GancliError("--device cuda but no CUDA device is available", "use --device cpu or auto")
    if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise GancliError(f"unknown device {device!r}", "use auto, cpu or cuda")
    return torch.device(device)


def make_optimizer(config: TrainConfig, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    # The fused kernel does the whole update in one pass: 1.2x faster training on 2 CPU cores.
    return torch.optim.Adam(params, lr=lr, betas=config.betas, weight_decay=weight_decay, fused=True)


def _optimizers(config: TrainConfig, G, D):
    return (make_optimizer(config, G.parameters(), config.lr_g, 0.0),
            make_optimizer(config, D.parameters(), config.lr_d, config.d_weight_decay))


def new_state(config: TrainConfig, device: str = "cpu", world: World = SINGLE) -> TrainState:
    dev = resolve_device(device)
    torch.manual_seed(config.seed)
    G, D = build_models(config)
    G, D = G.to(dev), D.to(dev)
    if world.rank > 0:  # the same networks on every rank, then dropout masks of its own
        torch.manual_seed(_rank_seed(config, world.rank))
    data_rng = torch.Generator().manual_seed(config.seed)
    noise_rng = torch.Generator().manual_seed(config.seed + 1)
    return _spread(TrainState(config, G, D, *_optimizers(config, G, D), data_rng, noise_rng, data_rng.get_state(), dev,
                              G_ema=_ema_of(G) if config.ema > 0 else None), world)


def _rank_seed(config: TrainConfig, rank: int) -> int:
    """The seed of rank > 0's global generator (dropout); rank 0 draws as a one-process run does."""
    return config.seed + 104729 * rank


def _spread(state: TrainState, world: World) -> TrainState:
    """Under torchrun, the global batch split over the ranks (train_step averages the gradients over
    them; with --sync-batch-norm, G's batch norm runs over the global batch)."""
    if world.size == 1:
        return state
    if state.config.batch_size % world.size:
        raise GancliError(f"--batch-size {state.config.batch_size} does not split evenly over {world.size} processes",
                          f"the global batch is split: pass a multiple of {world.size}")
    if state.config.sync_batch_norm:  # the new modules hold the same parameters: the optimizer keeps them
        if state.device.type != "cuda":
            raise GancliError("--sync-batch-norm needs one GPU per process (PyTorch's SyncBatchNorm)",
                              "drop it on CPUs: each process then normalises its part of the batch")
        state.G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(state.G)
    state.world = world
    return state


def _rng_key(name: str, rank: int) -> str:
    """A rank's global generator state in a checkpoint: rank 0's under the one-process name."""
    return name if rank == 0 else f"{name}.rank{rank}"


def _ema_of(G: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(G).requires_grad_(False)


def save_state(path: Path, state: TrainState) -> None:
    """Every rank calls it (their global generators are gathered); rank 0 writes."""
    generators = {"rng.torch": torch.get_rng_state()}
    if state.device.type == "cuda":
        generators["rng.cuda"] = torch.cuda.get_rng_state(state.device)
    ranks = state.world.gather(generators)
    if not state.world.main:
        return
    tensors = {f"G.{k}": v for k, v in state.G.state_dict().items()}
    tensors |= {f"D.{k}": v for k, v in state.D.state_dict().items()}
    if state.G_ema is not None:
        tensors |= {f"G_ema.{k}": v for k, v in state.G_ema.state_dict().items()}
    opt_g, rest_g = ckpt.flatten_optimizer("opt.G", state.opt_g.state_dict())
    opt_d, rest_d = ckpt.flatten_optimizer("opt.D", state.opt_d.state_dict())
    tensors |= opt_g | opt_d
    tensors |= {"rng.data": state.epoch_start_rng, "rng.noise": state.noise_rng.get_state()}
    tensors |= {_rng_key(k, rank): v for rank, states in enumerate(ranks) for k, v in states.items()}
    meta = {"kind": "gan", "config": state.config.to_dict(), "epoch": state.epoch, "step": state.step,
            "batch_in_epoch": state.batch_in_epoch, "totals": state.totals, "parent": state.parent,
            "objective_start": state.objective_start, "ema_updates": state.ema_updates,
            "optimizers": {"G": rest_g, "D": rest_d}, "world_size": state.world.size}
    ckpt.atomic_write(path, ckpt.encode({k: v.cpu() for k, v in tensors.items()}, meta))


def _read_checkpoint(path: Path, contents: tuple[dict, dict] | None) -> tuple[dict, dict, TrainConfig]:
    tensors, meta = contents or ckpt.read_file(path, "gan")
    try:
        config = TrainConfig.from_dict(meta["config"])
    except (KeyError, TypeError) as e:
        raise GancliError(f"{path}: the checkpoint has no readable config ({e})", "was it written by gan?") from None
    except GancliError as e:
        raise GancliError(f"{path}: {e.message}", "the checkpoint is damaged or forged") from None
    return tensors, meta, config


def _load_weights(net: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    expected = {k: (tuple(v.shape), v.dtype) for k, v in net.state_dict().items()}
    found = {k: (tuple(v.shape), v.dtype) for k, v in weights.items()}
    if expected != found:
        wrong = sorted(set(expected) ^ set(found)) or sorted(k for k in expected if expected[k] != found[k])
        raise GancliError(f"{path}: weights do not match the architecture in its config (first mismatch: {wrong[0]})",
                          "the checkpoint is damaged or was edited")
    net.load_state_dict(weights, assign=True)


def has_moving_average(tensors: dict[str, torch.Tensor]) -> bool:
    """Whether a checkpoint's tensors hold the generator's moving average (--ema)."""
    return any(k.startswith("G_ema.") for k in tensors)


def load_models(path: Path, device: str = "cpu", contents: tuple[dict, dict] | None = None, *,
                raw_generator: bool = False):
    """Config, G and D (eval mode) and metadata of a checkpoint (`contents`: its already-read tensors and metadata).
    G holds the moving average of the generator's weights when the run kept one (--ema), unless `raw_generator`.

    The networks are built on the meta device and take the file's tensors as they are: a forged
    config that claims huge layers allocates nothing before its shapes are checked against the file.
    """
    tensors, meta, config = _read_checkpoint(path, contents)
    with torch.device("meta"):
        G, D = build_models(config)
    _load_weights(G, ckpt.prefixed(tensors, "G" if raw_generator or not has_moving_average(tensors) else "G_ema"), path)
    _load_weights(D, ckpt.prefixed(tensors, "D"), path)
    dev = resolve_device(device)
    return config, G.to(dev).eval(), D.to(dev).eval(), meta


def _locked_changes(old: TrainConfig, changes: dict) -> list[str]:
    return [f for f in LOCKED_FIELDS if f in changes and changes[f] != getattr(old, f)]


def load_state(path: Path, changes: dict | None = None, device: str = "cpu",
               reset_optimizer: bool = False, world: World = SINGLE) -> tuple[TrainState, list[str]]:
    """Continue from a checkpoint with schedule `changes`; notes say what was switched and kept.

    A changed objective continues from the exact step the checkpoint holds (mid-epoch after
    Ctrl-C: the rest of that epoch is trained with the new objective); its epoch totals restart.
    """
    changes = {k: v for k, v in (changes or {}).items() if v is not None}
    tensors, meta, old_config = _read_checkpoint(path, None)
    if bad := _locked_changes(old_config, changes):
        raise GancliError(f"cannot change {', '.join(bad)} on resume: fixed when the run started "
                          f"(the checkpoint has {', '.join(f'{f}={getattr(old_config, f)}' for f in bad)})",
                          "start a new run with `gan train`")
    if "objective" not in changes and "div" in changes:
        changes["objective"] = "fgan"
    notes = []
    if "data" in changes and not mnist_data(changes["data"]) and "eval_every" not in changes and old_config.eval_every:
        changes["eval_every"] = 0  # as for a new run on such data (make_config)
        notes.append(f"per-epoch evaluation off: the shipped classifier knows digits, not {Path(changes['data']).name}")
    config = validate(dataclasses.replace(old_config, **changes))
    check_objective_options(config, changes)
    try:
        progress = {k: meta[k] for k in ("epoch", "step", "batch_in_epoch", "totals", "optimizers")}
        progress["objective_start"] = meta.get("objective_start", 0)
        progress["ema_updates"] = meta.get("ema_updates", 0)
        progress["world_size"] = meta.get("world_size", 1)
        counters = [progress[k] for k in ("epoch", "step", "batch_in_epoch", "objective_start", "ema_updates", "world_size")]
        if not all(type(c) is int and c >= 0 for c in counters) or not isinstance(progress["totals"], dict):
            raise ValueError("epoch, step and totals are not counters")
        if "batch_size" in changes and changes["batch_size"] != old_config.batch_size and progress["batch_in_epoch"]:
            raise GancliError(f"cannot change --batch-size in the middle of epoch {progress['epoch'] + 1}",
                              "finish the epoch first: gan resume CHECKPOINT --epochs 1")
        _, G, D, _ = load_models(path, device, (tensors, meta), raw_generator=True)
        G.train(), D.train()
        dev = resolve_device(device)
        ema_weights = ckpt.prefixed(tensors, "G_ema")
        G_ema = None
        if config.ema > 0:
            G_ema = _ema_of(G)
            if ema_weights:
                _load_weights(G_ema, ema_weights, path)
                G_ema = G_ema.to(dev)
            else:
                progress["ema_updates"] = 0
                notes.append("the generator's moving average (--ema) starts now, from its current weights")
        elif ema_weights:
            notes.append("the generator's moving average is dropped (--ema 0)")
        opt_g, opt_d = _optimizers(config, G, D)
        switched = config.trained_objective != old_config.trained_objective
        if switched:
            where = (f"batch {progress['batch_in_epoch']} of epoch {progress['epoch'] + 1} (the new objective "
                     "trains the rest of that epoch)" if progress["batch_in_epoch"] else f"epoch {progress['epoch']}")
            notes.append(f"switched {old_config.label} -> {config.label} at {where}; kept the networks; "
                         f"a new run records {path} as its parent")
        if config.optimizer != old_config.optimizer:
            notes.append(f"optimizer changed {old_config.optimizer} -> {config.optimizer}: moments start fresh")
        elif reset_optimizer:
            notes.append("optimizer moments dropped (--reset-optimizer)")
        else:
            opt_g.load_state_dict(ckpt.unflatten_optimizer("opt.G", tensors, progress["optimizers"]["G"]))
            opt_d.load_state_dict(ckpt.unflatten_optimizer("opt.D", tensors, progress["optimizers"]["D"]))
            for opt, lr, decay in ((opt_g, config.lr_g, 0.0), (opt_d, config.lr_d, config.d_weight_decay)):
                for group in opt.param_groups:
                    group.update(lr=lr, weight_decay=decay, **({"betas": config.betas} if "betas" in group else {}))
            if switched:
                notes.append("kept the optimizer moments (--reset-optimizer drops them)")
        data_rng, noise_rng = torch.Generator(), torch.Generator()
        data_rng.set_state(tensors["rng.data"])
        noise_rng.set_state(tensors["rng.noise"])
        if _rng_key("rng.torch", world.rank) in tensors:
            torch.set_rng_state(tensors[_rng_key("rng.torch", world.rank)])
        else:  # a rank the checkpoint's run did not have
            torch.manual_seed(_rank_seed(config, world.rank))
        if dev.type == "cuda" and _rng_key("rng.cuda", world.rank) in tensors:
            torch.cuda.set_rng_state(tensors[_rng_key("rng.cuda", world.rank)], dev)
        if progress["world_size"] != world.size:
            notes.append(f"trained on {progress['world_size']} process(es), continuing on {world.size}: the same data "
                         "order and latents, but gradients are averaged in another order (and dropout draws differ), "
                         "so not bit-exactly what the same number would have trained")
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        # Weights matched their config, so what failed is the rest of a damaged or edited file.
        raise GancliError(f"{path}: the checkpoint's training state is unreadable ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:100] if str(e) else ''})", "resume from another checkpoint") from None
    state = TrainState(config, G, D, opt_g, opt_d, data_rng, noise_rng, tensors["rng.data"], dev,
                       progress["epoch"], progress["step"], progress["batch_in_epoch"], progress["totals"],
                       meta.get("parent"), progress["objective_start"], G_ema, progress["ema_updates"])
    if switched:
        state.parent, state.totals, state.objective_start = str(path), {}, state.epoch
    return _spread(state, world), notes


@dataclass
class Resumed:
    """What `resume_run` prepared: the state to train, the run folder it writes, and what it decided."""

    state: TrainState
    run: Path
    switched: bool  # the objective changed
    child: bool  # `run` is a new run whose parent is the checkpoint (switched, or not a run's latest)
    notes: list[str]


def resume_run(path: Path, changes: dict | None = None, *, epochs: int | None = None, until_epoch: int | None = None,
               runs: str | None = None, name: str | None = None, device: str = "cpu",
               reset_optimizer: bool = False, world: World = SINGLE) -> Resumed:
    """The resume rules, in one place.

    - In place: the same objective from a run's `checkpoint.safetensors` continues that run
      (log lines past the checkpoint's epoch are dropped).
    - A new child run, whose `parent` is `path`, which stays untouched: a changed objective
      (--div, --alpha, --g-loss), or any other checkpoint file (a copy, an older snapshot), so
      that continuing never overwrites a file it was not asked to. It lives in the parent's
      runs folder (`runs` overrides) and is named by `name` or by objective and time.
    - Epochs: `epochs` more, or until `until_epoch` in all; by default an interrupted run
      finishes its configured epochs and a finished one trains as many again.
    """
    path = Path(path)
    if epochs is not None and until_epoch is not None:
        raise GancliError("--epochs (more) and --until-epoch (in all) exclude each other", "give one")
    if (epochs is not None and epochs < 1) or (until_epoch is not None and until_epoch < 1):
        raise GancliError("--epochs and --until-epoch must be at least 1")
    state, notes = load_state(path, changes, device, reset_optimizer, world)
    switched = state.parent == str(path)  # load_state records the checkpoint as parent exactly when switching
    in_place = not switched and path.name == CHECKPOINT
    if not in_place and not switched:
        state.parent = str(path)
        notes.append(f"{path} is not a run's latest checkpoint: continuing in a new run that records it as its parent")
    done, configured = state.epoch, state.config.epochs
    if until_epoch is not None and until_epoch <= done:
        raise GancliError(f"{path} has completed {done} epochs already", f"pass --until-epoch above {done}, or --epochs N more")
    if epochs is not None:
        until_epoch = done + epochs
    elif until_epoch is None:
        until_epoch = configured if done < configured else done + configured
    state.config = dataclasses.replace(state.config, epochs=until_epoch)
    if in_place:
        if name is not None:
            raise GancliError(f"--name names a new run, and this resume continues {path.parent} in place",
                              "drop --name, or switch objective to start a child run")
        world.on_main(lambda: truncate_log(path.parent, state.epoch))
        return Resumed(state, path.parent, False, False, notes)
    is_run_folder = path.name == CHECKPOINT or (path.parent / LOG).is_file()
    root = Path(runs) if runs else (path.parent.parent if is_run_folder else runs_root())
    return Resumed(state, world.on_main(lambda: new_run_dir(root, name, state.config.label)), switched, True, notes)


def _grad_norm(params, clip: float) -> torch.Tensor:
    """Total gradient norm; with clip > 0, rescale grad <- C grad/||grad|| when ||grad|| >= C: a factor
    min(1, C/||grad||), so that the device never waits on the host's test."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads)
    if clip > 0:
        torch._foreach_mul_(grads, (clip / norm).clamp(max=1.0))
    return norm


def _diverged(state: TrainState, what: str, run: Path, step: int | None = None) -> GancliError:
    """The guard's error at `step` (default: the last one); the run keeps the reason (for `gan runs`)
    until its next saved epoch."""
    step = state.step if step is None else step
    if state.world.main:
        with contextlib.suppress(OSError):
            (run / DIVERGED).write_text(json.dumps({"epoch": state.epoch + 1, "step": step, "reason": what}))
    # a run stopped in its first epoch has no checkpoint of its own; a switched run's is its parent's
    last_good = run / CHECKPOINT if (run / CHECKPOINT).is_file() else state.parent
    kept = f"the last good checkpoint (epoch {state.epoch}) is {last_good}" if last_good else "no epoch had finished"
    return GancliError(
        f"training diverged at epoch {state.epoch + 1}, step {step}: {what}; nothing was written, {kept}",
        "known cures: --r1 10 (fgan's default), --spectral-norm (at train time), JS pre-training (`gan pretrain`, "
        "then `gan resume --div ...`), a lower --lr, --clip-grad-norm 1, --d-weight-decay 1e-4",
    )


def _global_draw(state: TrainState, draw: Callable[..., torch.Tensor], *shape: int) -> torch.Tensor:
    """`draw` (torch.randn, torch.rand) of the whole global batch from noise_rng, this rank's rows, on the device."""
    values = state.world.part(draw(state.config.batch_size, *shape, generator=state.noise_rng))
    if state.device.type == "cuda":  # a copy from pageable memory would wait for the GPU's queue to drain
        return values.pin_memory().to(state.device, non_blocking=True)
    return values


def train_step(state: TrainState, real: torch.Tensor, ms_lambda: float) -> dict[str, torch.Tensor]:
    """One discriminator step on this rank's `real` images, plus a generator step every n_critic steps.
    Returns the scalars as tensors on the device (reading them waits for it: see ScalarReader)."""
    cfg, G, D = state.config, state.G, state.D
    batch = real.shape[0]
    z = _global_draw(state, torch.randn, cfg.z_dim)
    g_turn = (state.step + 1) % cfg.n_critic == 0
    bf16 = torch.autocast(state.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    with torch.set_grad_enabled(g_turn), bf16:
        fake = G(z)
    r1_turn = cfg.r1 > 0 and state.step % cfg.r1_every == 0
    both = torch.cat([real, fake.detach()]).requires_grad_(r1_turn)
    with bf16:
        v = D(both).float()  # one pass over real and fake: larger, faster GEMMs
    v_real, v_fake = v[:batch], v[batch:]
    loss_d = losses.d_loss(cfg, v_real, v_fake)
    out = {"d_loss": loss_d.detach()}
    out["d_acc_real"], out["d_acc_fake"] = losses.d_accuracy(cfg, v_real.detach(), v_fake.detach())
    if r1_turn:
        loss_d = loss_d + cfg.r1 / 2 * cfg.r1_every * losses.zero_centred_penalty(v_real, both)
    if cfg.objective in losses.WASSERSTEIN:
        out["wasserstein"] = -out["d_loss"]
    if cfg.gp_lambda > 0:
        eps = _global_draw(state, torch.rand, 1, 1, 1)
        with bf16:
            loss_d = loss_d + cfg.gp_lambda * losses.gradient_penalty(D, real, fake.detach().float(), eps)
    state.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    average_gradients(D, state.world)  # under torchrun: each rank then takes the global batch's step
    out["grad_norm_d"] = _grad_norm(list(D.parameters()), cfg.clip_grad_norm)
    state.opt_d.step()
    if cfg.clip_weights > 0:
        with torch.no_grad():
            torch._foreach_clamp_min_(list(D.parameters()), -cfg.clip_weights)
            torch._foreach_clamp_max_(list(D.parameters()), cfg.clip_weights)
    if g_turn:
        D.requires_grad_(False)  # the generator step needs dD/dx only, not D's weight gradients
        with bf16:
            v_fake = D(fake).float()
        loss_g = losses.g_loss(cfg, v_fake)
        out["g_loss"] = loss_g.detach()
        if ms_lambda > 0:
            z2 = _global_draw(state, torch.randn, cfg.z_dim)
            with bf16:
                fake2 = G(z2)
            loss_g = loss_g + ms_lambda * losses.mode_seeking(fake.float(), fake2.float(), z, z2)
        state.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        average_gradients(G, state.world)
        out["grad_norm_g"] = _grad_norm(list(G.parameters()), cfg.clip_grad_norm)
        state.opt_g.step()
        if state.G_ema is not None:
            _update_ema(state)
        D.requires_grad_(True)
    state.step += 1
    return out


def ema_decay(beta: float, updates: int) -> float:
    """The moving average's decay after `updates` generator steps: min(beta, (1 + t) / (10 + t)), the
    warm-up of TensorFlow's ExponentialMovingAverage, so that early epochs are not frozen at initialisation."""
    return min(beta, (1 + updates) / (10 + updates))


def _update_ema(state: TrainState) -> None:
    """G_ema <- b G_ema + (1 - b) G for the parameters (b = ema_decay); buffers (batch norm statistics) copied."""
    decay = ema_decay(state.config.ema, state.ema_updates)
    with torch.no_grad():
        torch._foreach_lerp_(list(state.G_ema.parameters()), list(state.G.parameters()), 1 - decay)
        for average, current in zip(state.G_ema.buffers(), state.G.buffers(), strict=True):
            average.copy_(current)
    state.ema_updates += 1


class ScalarReader:
    """The per-step scalars, kept on the device where they were computed and read in one host
    synchronisation every `every` steps and at an epoch's end (a read per step stalls a GPU). A read
    averages them over the ranks together with whether any rank was asked to stop (Ctrl-C), so that
    every rank sees the same values and stops at the same step."""

    def __init__(self, world: World, every: int):
        self.world, self.every = world, every
        self.pending: list[tuple[int, dict[str, torch.Tensor]]] = []

    def add(self, step: int, scalars: dict[str, torch.Tensor]) -> None:
        self.pending.append((step, scalars))

    def due(self, end_of_epoch: bool) -> bool:
        return end_of_epoch or len(self.pending) >= self.every

    def read(self, stop: bool = False) -> tuple[list[tuple[int, dict[str, float]]], bool]:
        """(step, scalars as floats) of every pending step in order, and whether any rank stops."""
        flat = [v.float() for _, scalars in self.pending for v in scalars.values()]
        values = self.world.mean(torch.stack([*flat, flat[0].new_tensor(float(stop))])).tolist()
        rows, at = [], 0
        for step, scalars in self.pending:
            rows.append((step, dict(zip(scalars, values[at:at + len(scalars)], strict=True))))
            at += len(scalars)
        self.pending = []
        return rows, values[-1] > 0


def _take(state: TrainState, rows: list[tuple[int, dict[str, float]]], run: Path,
          on_step: Callable[[TrainState, dict], None] | None) -> None:
    """Read steps into the epoch's totals, the guard first: a non-finite parameter shows up as a non-finite
    loss at the next step, so the scalars are the only per-step check (parameters are checked before
    each save). Read late, a bad value still names its step, and nothing has been saved since."""
    for step, scalars in rows:
        bad = [k for k, v in scalars.items() if not math.isfinite(v)]
        if bad:
            raise _diverged(state, ", ".join(f"{k} = {scalars[k]}" for k in bad), run, step)
        _accumulate(state.totals, scalars)
        state.totals["images"] = state.totals.get("images", 0) + state.config.batch_size
        if on_step:
            on_step(state, scalars)


def _accumulate(totals: dict, scalars: dict) -> None:
    for key, value in scalars.items():
        totals[key] = totals.get(key, 0.0) + value
        totals[f"n_{key}"] = totals.get(f"n_{key}", 0) + 1
        if key.startswith("grad_norm"):
            totals[f"{key}_max"] = max(totals.get(f"{key}_max", 0.0), value)


def _epoch_record(state: TrainState, ms_lambda: float) -> dict:
    t = state.totals
    record = {"epoch": state.epoch + 1, "step": state.step, "objective": state.config.label}
    for key in ("d_loss", "g_loss", "wasserstein", "d_acc_real", "d_acc_fake", "grad_norm_d", "grad_norm_g"):
        if t.get(f"n_{key}"):
            record[key] = t[key] / t[f"n_{key}"]
        if f"{key}_max" in t:
            record[f"{key}_max"] = t[f"{key}_max"]
    lr = state.config.lr_factor(state.epoch, state.objective_start)
    record |= {"lr_d": state.config.lr_d * lr, "lr_g": state.config.lr_g * lr, "ms_lambda": ms_lambda,
               "seconds": t.get("seconds", 0.0)}
    record["images_per_s"] = t.get("images", 0) / max(record["seconds"], 1e-9)
    return record


class _SigintFlag:
    """First Ctrl-C asks the loop to stop after the current step; a second one stops at once."""

    def __init__(self):
        self.raised = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def save_grid(G: torch.nn.Module, config: TrainConfig, path: Path, device: torch.device) -> None:
    z = torch.randn(GRID_SIZE, config.z_dim, generator=torch.Generator().manual_seed(config.seed + 7919))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png_grid(generate_images(G, z, device), path, nrow=8)


def check_data(config: TrainConfig, images: torch.Tensor) -> int:
    """The number of batches an epoch of `images` makes, or a GancliError if they cannot train these networks."""
    if tuple(images.shape[1:]) != tuple(config.image_shape):
        raise GancliError(f"data images are {tuple(images.shape[1:])}, the networks expect {tuple(config.image_shape)}",
                          "train a new run on this data")
    if images.shape[0] < config.batch_size:
        raise GancliError(f"{images.shape[0]} images are fewer than one batch of {config.batch_size}", "lower --batch-size")
    return images.shape[0] // config.batch_size


def _evaluated_at(config: TrainConfig, epoch: int) -> bool:
    """Whether the evaluation runs after this (1-based) epoch: every eval_every-th and the last."""
    return config.eval_every > 0 and (epoch % config.eval_every == 0 or epoch == config.epochs)


def train(state: TrainState, images: torch.Tensor, run: Path,
          on_step: Callable[[TrainState, dict], None] | None = None,
          on_epoch: Callable[[TrainState, dict], None] | None = None,
          evaluate: Callable[[torch.nn.Module], dict] | None = None) -> TrainState:
    """Train until state.epoch == config.epochs; checkpoint, log line and grid after every epoch.
    After the first of them, `run`'s runs folder's `latest` points at `run`.

    With `evaluate` (evaluation.make_evaluator), the epochs config.eval_every asks for add its
    metrics to their log line, and `run`/best.safetensors becomes a copy of the checkpoint of the
    epoch with the lowest FID so far (the run's earlier log lines included).

    Under torchrun every rank calls it; rank 0 alone evaluates and writes, the others wait at a
    barrier after each epoch. `on_step` sees each step's scalars when they are read (ScalarReader)."""
    cfg, main = state.config, state.world.main
    n_batches = check_data(cfg, images)
    run.mkdir(parents=True, exist_ok=True)
    images = images.to(state.device)
    marked_latest = False
    best_fid = min((r["fid"] for r in read_log(run) if isinstance(r.get("fid"), (int, float))), default=math.inf)
    reader = ScalarReader(state.world, READ_EVERY.get(state.device.type, 1))
    with marked_training(run) if main else contextlib.nullcontext(), _SigintFlag() as sigint:
        while state.epoch < cfg.epochs:
            state.data_rng.set_state(state.epoch_start_rng)
            order = torch.randperm(images.shape[0], generator=state.data_rng)[: n_batches * cfg.batch_size]
            batches = order.view(n_batches, cfg.batch_size).to(state.device)
            ms_lambda = cfg.ms_lambda_at(state.epoch) if cfg.ms_lambda > 0 else 0.0
            lr = cfg.lr_factor(state.epoch, state.objective_start)
            for opt, base in ((state.opt_g, cfg.lr_g), (state.opt_d, cfg.lr_d)):
                for group in opt.param_groups:
                    group["lr"] = base * lr
            started = time.perf_counter()
            while state.batch_in_epoch < n_batches:
                real = to_unit_range(images[state.world.part(batches[state.batch_in_epoch])])
                scalars = train_step(state, real, ms_lambda)
                reader.add(state.step, scalars)
                state.batch_in_epoch += 1
                if not reader.due(state.batch_in_epoch == n_batches):
                    continue
                rows, stop = reader.read(sigint.raised)
                state.totals["seconds"] = state.totals.get("seconds", 0.0) + time.perf_counter() - started
                _take(state, rows, run, on_step)
                # one process stops after the step Ctrl-C came in; ranks stop together, at a read
                if stop or (sigint.raised and state.world.size == 1):
                    _check_finite(state, run)
                    save_state(run / CHECKPOINT, state)
                    raise TrainingInterrupted(run / CHECKPOINT)
                started = time.perf_counter()
            _check_finite(state, run)
            record = _epoch_record(state, ms_lambda)
            if evaluate is not None and _evaluated_at(cfg, record["epoch"]):
                record |= evaluate(state.generator)
                record["best"] = record["fid"] < best_fid
            state.epoch, state.batch_in_epoch, state.totals = state.epoch + 1, 0, {}
            state.epoch_start_rng = state.data_rng.get_state()
            # Log first, checkpoint second: a kill in between leaves a log line past the
            # checkpoint's epoch, which resume drops (runs.truncate_log).
            if main:
                append_log(run, record)
            save_state(run / CHECKPOINT, state)
            if main:
                (run / DIVERGED).unlink(missing_ok=True)
                if record.get("best"):
                    ckpt.atomic_copy(run / CHECKPOINT, run / BEST)
                    best_fid = record["fid"]
                if not marked_latest:  # only a run with a checkpoint may become the default everywhere
                    set_latest(run)
                    marked_latest = True
                save_grid(state.generator, cfg, run / "grids" / f"epoch-{state.epoch:03d}.png", state.device)
            state.world.barrier()
            if on_epoch:
                on_epoch(state, record)
    return state


def _check_finite(state: TrainState, run: Path) -> None:
    for name, net in (("G", state.G), ("D", state.D)):
        if not all(torch.isfinite(p).all() for p in net.parameters()):
            raise _diverged(state, f"a parameter of {name} is not finite", run)
