"""The training loop: importable, no Typer, no printing; progress goes through callbacks.

One concept: the step (`train_step`), the moving average, the scalar reader, the divergence guard
and `train`, read top to bottom. The state it trains and its checkpoint are state.py's; the resume
rules resuming.py's. Under torchrun (distributed.py) every rank calls `train`; rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from gancli import losses
from gancli.augment import DRAWS_PER_POLICY, diff_augment
from gancli.checkpoint import atomic_copy, read_header
from gancli.config import TrainConfig
from gancli.distributed import World, average_gradients
from gancli.errors import GancliError, TrainingInterrupted
from gancli.models import generate_images, to_unit_range
from gancli.runs import BEST, CHECKPOINT, DIVERGED, RunLock, append_log, fid_protocol, number, read_log, set_latest, truncate_log
from gancli.state import TrainState, save_state
from gancli.streams import save_png_grid

GRID_SIZE = 64
# Fields of a log record that measure the machine rather than the run.
TIMING_FIELDS = ("seconds", "images_per_s", "eval_seconds")
# Steps between reads of the per-step scalars, by device type (one host synchronisation each): on a
# CPU a read costs nothing; on a GPU, 32 steps are about the progress bar's pace for the course MLP.
READ_EVERY = {"cpu": 1, "cuda": 32}


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


def _augmented(state: TrainState, images: torch.Tensor) -> torch.Tensor:
    """DiffAugment's T of a batch (real or fake), its randomness drawn from noise_rng; the batch itself
    without --diffaug."""
    policies = state.config.augmentations
    if not policies:
        return images
    return diff_augment(images, policies, _global_draw(state, torch.rand, DRAWS_PER_POLICY * len(policies)))


def train_step(state: TrainState, real: torch.Tensor, ms_lambda: float, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One discriminator step on this rank's `real` images, plus a generator step every n_critic steps.
    A conditional run's fakes are drawn for the real batch's `labels`: p(y) matches the data's, and the
    gradient penalty mixes a real and a fake of one class. Returns the scalars as tensors on the device
    (reading them waits for it: see ScalarReader)."""
    cfg, G, D = state.config, state.G, state.D
    batch = real.shape[0]
    z = _global_draw(state, torch.randn, cfg.z_dim)
    g_turn = (state.step + 1) % cfg.n_critic == 0
    bf16 = torch.autocast(state.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    with torch.set_grad_enabled(g_turn), bf16:
        fake = G(z, labels)
    r1_turn = cfg.r1 > 0 and state.step % cfg.r1_every == 0
    # what D sees (DiffAugment: T(real), T(fake)); R1 and the gradient penalty are taken on it
    both = torch.cat([_augmented(state, real), _augmented(state, fake.detach())]).requires_grad_(r1_turn)
    with bf16:
        v = D(both, None if labels is None else torch.cat([labels, labels])).float()  # one pass over real and fake
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
            loss_d = loss_d + cfg.gp_lambda * losses.gradient_penalty(D, both[:batch].detach(), both[batch:].detach().float(),
                                                                      eps, labels)
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
            v_fake = D(_augmented(state, fake), labels).float()
        loss_g = losses.g_loss(cfg, losses.top_k(v_fake, cfg.top_k_at(state.epoch, len(v_fake))))
        out["g_loss"] = loss_g.detach()
        if ms_lambda > 0:
            z2 = _global_draw(state, torch.randn, cfg.z_dim)
            with bf16:
                fake2 = G(z2, labels)
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
    """GRID_SIZE images of fixed latents, 8 a row; a conditional run's, one row of 8 per class."""
    labels = torch.arange(config.n_classes).repeat_interleave(8) if config.conditional else None
    z = torch.randn(GRID_SIZE if labels is None else len(labels), config.z_dim,
                    generator=torch.Generator().manual_seed(config.seed + 7919))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png_grid(generate_images(G, z, device, labels=labels), path, nrow=8)


def check_data(config: TrainConfig, images: torch.Tensor, labels: torch.Tensor | None = None) -> int:
    """The number of batches an epoch of `images` (with their `labels` for a conditional run) makes, or a
    GancliError if they cannot train these networks."""
    if config.conditional and (labels is None or len(labels) != len(images)):
        raise GancliError("a class-conditional run trains on labelled images", "train on a dataset or a folder of class folders")
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
          evaluate: Callable[[torch.nn.Module], dict] | None = None, labels: torch.Tensor | None = None) -> TrainState:
    """Train until state.epoch == config.epochs; checkpoint, log line and grid after every epoch.
    After the first of them, `run`'s runs folder's `latest` points at `run`. A conditional run takes
    each image's class in `labels`, batched in the data's order with it.

    With `evaluate` (evaluation.make_evaluator), the epochs config.eval_every asks for add its
    metrics to their log line, and `run`/best.safetensors becomes a copy of the checkpoint of the
    epoch with the lowest FID so far (the run's earlier log lines included).

    Under torchrun every rank calls it; rank 0 alone evaluates and writes, the others wait at a
    barrier after each epoch. `on_step` sees each step's scalars when they are read (ScalarReader)."""
    cfg, main = state.config, state.world.main
    n_batches = check_data(cfg, images, labels)
    run.mkdir(parents=True, exist_ok=True)
    images = images.to(state.device)
    labels = labels.to(state.device) if cfg.conditional else None
    marked_latest = False
    reader = ScalarReader(state.world, READ_EVERY.get(state.device.type, 1))
    with contextlib.ExitStack() as held, _SigintFlag() as sigint:
        state.world.on_main(lambda: _take_the_run(run, state, held))  # a refusal reaches every rank
        evaluated = [r for r in read_log(run) if number(r.get("fid")) is not None]
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
                picked = state.world.part(batches[state.batch_in_epoch])
                scalars = train_step(state, to_unit_range(images[picked]), ms_lambda, None if labels is None else labels[picked])
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
                with torch.random.fork_rng(devices=[state.device] if state.device.type == "cuda" else []):
                    record |= evaluate(state.generator)  # whatever it draws, training's generators are untouched
                # an epoch is best among those whose FIDs compare with its own
                record["best"] = record["fid"] < min((r["fid"] for r in evaluated if fid_protocol(r) == fid_protocol(record)),
                                                     default=math.inf)
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
                    atomic_copy(run / CHECKPOINT, run / BEST)
                if number(record.get("fid")) is not None:
                    evaluated.append(record)
                if not marked_latest:  # only a run with a checkpoint may become the default everywhere
                    set_latest(run)
                    marked_latest = True
                save_grid(state.generator, cfg, run / "grids" / f"epoch-{state.epoch:03d}.png", state.device)
            state.world.barrier()
            if on_epoch:
                on_epoch(state, record)
    return state


def _take_the_run(run: Path, state: TrainState, held: contextlib.ExitStack) -> None:
    """Rank 0 locks the run for as long as `held` lasts (one writer per run), checks that the run's checkpoint,
    if it has one, is the one `state` continues (another process may have trained the run between reading it
    and locking it: training on would overwrite that work), and drops log lines past that checkpoint's epoch
    (a kill between the log's write and the checkpoint's)."""
    held.enter_context(RunLock(run))
    header = read_header(run / CHECKPOINT)
    if (run / CHECKPOINT).is_file() and (header is None or (header.progress.epoch, header.progress.step) != (state.epoch, state.step)):
        raise GancliError(f"{run / CHECKPOINT} is not the checkpoint this training continues (it moved on, or is another run's)",
                          "resume the run again to continue from its latest checkpoint")
    truncate_log(run, state.epoch)


def _check_finite(state: TrainState, run: Path) -> None:
    for name, net in (("G", state.G), ("D", state.D)):
        if not all(torch.isfinite(p).all() for p in net.parameters()):
            raise _diverged(state, f"a parameter of {name} is not finite", run)
