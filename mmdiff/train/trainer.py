"""The training loop: any modality, one GPU or several (accelerate), resumable to the same weights.

What it does each optimizer step: ``grad_accum`` micro-batches from :class:`~mmdiff.train.stream.StreamBatchSampler`,
each encoded by the adapter and conditioned by the conditioner (with its dropout for classifier-free guidance), the
per-sample diffusion loss with per-sample noise generators (so the result does not depend on how the global batch is
split over processes),
gradient clipping, an optimizer and LR-scheduler step, and an EMA update. Around it: a progress bar, TensorBoard
scalars, demo samples with fixed seeds every ``sample_every`` steps, and atomic checkpoints every
``checkpoint_every`` steps.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..checkpoints import (
    check_checkpoint,
    checkpoint_dirs,
    load_state,
    load_weights,
    newest_checkpoint,
    refuse_pickles,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ..conditioners import Conditioner, training_conditions
from ..configs import record_run_setup
from ..data import StreamingDataset, first_items
from ..generation import GenerateOptions, Samples, generate
from ..modality import ModalityAdapter
from .interrupt import STOP_SIGNALS, SignalStop, TrainingInterrupted
from .loader import resolve_workers
from .runs import move_aside, refuse_mixing, resume_command
from .stream import StreamBatchSampler, noise_generators, streaming_batches
from .warm_start import load_matching_weights

log = logging.getLogger("mmdiff.train")


class NonFiniteLossError(RuntimeError):
    """The loss (or the weights) became NaN or infinite.

    The trainer keeps the loss on the device and reads it only every ``log_every`` steps, before each checkpoint and
    demo samples, and at the end (reading it every step would make the host wait for the accelerator each step). So
    the error comes at the next read, up to ``log_every`` steps after the bad step, whose number it gives; the
    weights of the steps in between may be non-finite and are never saved: the last checkpoint is always finite.
    """


class _Stats(NamedTuple):
    loss: float  # this step's loss, mean over processes
    smoothed: float  # exponential moving average (0.98) of the step losses
    grad_norm: float | None  # before clipping; None without clipping


class _LossMonitor:
    """The step losses and a non-finite marker, kept on the device between reads (no host sync per step)."""

    def __init__(self, acc: Any, start: int):
        self.acc, self.checked = acc, start  # the last step read
        self.last: torch.Tensor | None = None  # () this step's loss
        self.smoothed: torch.Tensor | None = None  # ()
        self.first_bad = torch.zeros((), device=acc.device)  # () first step with a non-finite loss since the read
        self.grad_norm: torch.Tensor | None = None

    def add(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor | None) -> None:
        self.last, self.grad_norm = loss, grad_norm
        self.smoothed = loss.clone() if self.smoothed is None else self.smoothed.mul_(0.98).add_(loss, alpha=0.02)
        bad = ~torch.isfinite(loss) & (self.first_bad == 0)
        self.first_bad = torch.where(bad, torch.full_like(self.first_bad, step), self.first_bad)

    def read(self, step: int, run_dir: Path) -> _Stats:
        """Bring the numbers to the host (one transfer; a gather under several processes, which all call this at
        the same step); raise :class:`NonFiniteLossError` naming the bad step and the last checkpoint."""
        norm = self.grad_norm if self.grad_norm is not None else torch.tensor(float("nan"))
        row = torch.stack(
            [t.detach().float().to(self.acc.device) for t in (self.last, self.smoothed, self.first_bad, norm)]
        )
        rows = self.acc.gather(row[None]).cpu().tolist()  # (processes, 4)
        bad = [int(r[2]) for r in rows if r[2] > 0]
        if bad:
            found = checkpoint_dirs(run_dir)
            raise NonFiniteLossError(
                f"step {min(bad)}: the loss is not finite (read at step {step}, covering steps {self.checked + 1}-"
                f"{step}); the weights since then were not saved. Last checkpoint: {found[-1] if found else 'none'}. "
                "Try a lower optim.lr, a tighter trainer.grad_clip, or bf16 instead of fp16."
            )
        self.checked, self.first_bad = step, torch.zeros_like(self.first_bad)
        norm_value = rows[0][3]
        return _Stats(
            sum(r[0] for r in rows) / len(rows),
            sum(r[1] for r in rows) / len(rows),
            None if math.isnan(norm_value) else norm_value,
        )


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _check_device(device: str) -> None:
    """``trainer.device``: auto, cpu, cuda or cuda:N, and a GPU that is there."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"trainer.device: expected auto, cpu, cuda or cuda:N, got {device!r}")
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise ValueError(f"trainer.device={device}: no CUDA GPU is visible here; use trainer.device=auto or cpu")
    if ":" in device:
        index, count = int(device.split(":")[1]), torch.cuda.device_count()
        if index >= count:
            raise ValueError(
                f"trainer.device={device}: {count} GPU(s) visible (cuda:0 to cuda:{count - 1}); "
                "CUDA_VISIBLE_DEVICES chooses which GPUs are visible"
            )
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError(
                f"trainer.device={device} pins one GPU for a single process; several processes take theirs from "
                "the launcher: use trainer.device=auto and choose the GPUs with CUDA_VISIBLE_DEVICES"
            )


def _leave_signals_to_main(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C and SIGTERM to the main process, which finishes its step and saves.

    Both reach every process of a group: Ctrl-C in a terminal, and SIGTERM from ``timeout``, ``kill -- -PGID`` or a
    scheduler stopping a job (Slurm signals every process of the step). A worker that died of it would make the main
    process fail with "DataLoader worker ... is killed by signal" before it could save. The DataLoader shuts its
    workers down itself, and they exit on their own if the main process dies. The price: a worker stuck for good
    inside one item (a decoder that never returns) no longer dies of the DataLoader's ``terminate()`` at the end.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _close(bar: Any, writer: Any) -> None:
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()


def parameter_groups(net: nn.Module) -> Any:
    """``net``'s parameters for the optimizer: all in one group, or, when a submodule sets ``lr_scale`` other than 1
    (the built-in text encoder, ``conditioner.lr_scale``), that submodule's in a group of its own tagged with its
    ``lr_scale``, which multiplies ``optim.lr`` once the optimizer is built. One group when nothing sets it, so that
    checkpoints of runs without it resume as before."""
    scaled = {
        name: float(module.lr_scale)
        for name, module in net.named_modules()
        if float(getattr(module, "lr_scale", 1.0)) != 1.0
    }
    if not scaled:
        return net.parameters()
    groups: dict[float, list[nn.Parameter]] = {1.0: []}
    for name, param in net.named_parameters():
        owner = max((m for m in scaled if name.startswith(m + ".")), key=len, default=None)
        groups.setdefault(scaled[owner] if owner else 1.0, []).append(param)
    return [{"params": params, "lr_scale": scale} for scale, params in groups.items() if params]


class _Keyed(Dataset):
    """Passes ``(index, item_seed)`` keys to the dataset and adds the seed to each item as ``"_seed"``; with
    ``item_keys``, also the dataset's ``item_key`` of the item as ``"_key"`` (``""`` when it has none), for an
    adapter's latent cache."""

    def __init__(self, dataset: Dataset, item_keys: bool = False):
        self.dataset = dataset
        self.item_key = getattr(dataset, "item_key", None) if item_keys else None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        item = {**self.dataset[key], "_seed": key[1]}
        if self.item_key is not None:  # after the item: a folder names the crop it has just read
            item["_key"] = self.item_key(*key) or ""
        return item


class Trainer:
    """Trains ``net`` on ``dataset`` through ``adapter`` with ``objective``; settings are plain keyword arguments.

    Args:
        adapter: the modality adapter (see ``conf/adapter``).
        conditioner: turns each batch into the network's conditions and drops them for guidance (``conf/conditioner``).
        net: the network ``net(x_t, t, **cond)``.
        dataset: the training data; keys are ``(index, item_seed)`` pairs.
        objective: the loss, e.g. :class:`~mmdiff.core.objectives.DiffusionLoss`.
        optimizer: a callable ``params -> torch.optim.Optimizer`` (Hydra ``_partial_: true``).
        run_dir: where checkpoints, samples, TensorBoard events and logs go.
        config_yaml: the resolved config, saved in each checkpoint.
        generate: the demo samples' :class:`~mmdiff.generation.GenerateOptions` (or a mapping of them).
        max_steps: optimizer steps to train for (a resumed run counts the steps already done).
        batch_size: samples per process per micro-batch; the global batch is ``batch_size * processes * grad_accum``.
        resume: ``None``, ``"auto"`` (the newest complete checkpoint in ``run_dir``, if any) or a checkpoint folder.
        overwrite: start over in a ``run_dir`` that holds another run's checkpoints: its ``checkpoints/``,
            ``samples/`` and ``tensorboard/`` move into ``run_dir/replaced_<time>/``. Without it (and without
            ``resume``) such a ``run_dir`` is refused before any work, so that runs never mix.
        init_from: a run dir, checkpoint folder or ``.safetensors`` file whose matching tensors start the network
            (the EMA weights of a folder): fine-tuning, with a new optimizer, step 0 and this run's data.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (a single process on GPU
            ``N``; several processes take their GPUs from the launcher, chosen with ``CUDA_VISIBLE_DEVICES``).
        log_every: steps between TensorBoard scalars; with ``progress=False`` also between log lines (loss, lr,
            samples/s), so that a batch job's log shows how far it got.
        progress: show a tqdm progress bar (main process only).
    """

    def __init__(
        self,
        *,
        adapter: ModalityAdapter,
        conditioner: Conditioner,
        net: nn.Module,
        dataset: Dataset,
        objective: Any,
        optimizer: Callable[..., torch.optim.Optimizer],
        run_dir: str | Path,
        config_yaml: str = "",
        generate: GenerateOptions | dict[str, Any] | None = None,
        max_steps: int = 1000,
        batch_size: int = 64,
        grad_accum: int = 1,
        lr_schedule: str = "constant_with_warmup",
        lr_warmup_steps: int = 0,
        grad_clip: float | None = 1.0,
        ema_decay: float = 0.999,
        mixed_precision: str = "no",
        checkpoint_every: int = 500,
        keep_checkpoints: int = 3,
        sample_every: int = 500,
        log_every: int = 10,
        num_workers: int | str = "auto",
        seed: int = 0,
        resume: str | None = None,
        overwrite: bool = False,
        init_from: str | None = None,
        device: str = "auto",
        compile: bool = False,
        progress: bool = True,
    ):
        if mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"trainer.mixed_precision: expected no, bf16 or fp16, got {mixed_precision!r}")
        _check_device(device)
        for key, value in (
            ("max_steps", max_steps),
            ("batch_size", batch_size),
            ("grad_accum", grad_accum),
            ("log_every", log_every),
        ):
            if value < 1:
                raise ValueError(f"trainer.{key} must be >= 1, got {value}")
        for key, value in (
            ("checkpoint_every", checkpoint_every),
            ("sample_every", sample_every),
            ("keep_checkpoints", keep_checkpoints),
        ):
            if value < 0:
                raise ValueError(f"trainer.{key} must be >= 0, got {value}")
        resolve_workers(num_workers, dataset, "cpu")  # a bad value fails here, before anything starts
        if resume not in (None, "", "none") and init_from:
            raise ValueError(
                "trainer.init_from starts a new run from trained weights and cannot go with trainer.resume, which "
                "continues a run: drop one of them"
            )
        if resume not in (None, "", "none") and overwrite:
            raise ValueError(
                "trainer.overwrite=true starts the run over and cannot go with trainer.resume, which continues it: "
                "drop one of them"
            )
        self.adapter, self.conditioner, self.net, self.dataset = adapter, conditioner, net, dataset
        self.objective = objective
        self.optimizer_factory, self.run_dir, self.config_yaml = optimizer, Path(run_dir), config_yaml
        self.generate = (
            generate if isinstance(generate, GenerateOptions) else GenerateOptions.from_mapping(generate or {})
        )
        self.max_steps, self.batch_size, self.grad_accum = max_steps, batch_size, grad_accum
        self.lr_schedule, self.lr_warmup_steps, self.grad_clip = lr_schedule, lr_warmup_steps, grad_clip
        self.ema_decay, self.mixed_precision = ema_decay, mixed_precision
        self.checkpoint_every, self.keep_checkpoints = checkpoint_every, keep_checkpoints
        self.sample_every, self.log_every, self.num_workers = sample_every, log_every, num_workers
        self.seed, self.resume, self.device, self.compile, self.progress = seed, resume, device, compile, progress
        self.overwrite, self.init_from = overwrite, init_from
        self._stop = SignalStop()

    # ---- setup -------------------------------------------------------------------------------------------------
    def _resume_from(self) -> Path | None:
        """The checkpoint to resume from, checked (a file that is missing, truncated or a pickle is named)."""
        if self.resume in (None, "", "none"):
            return None
        if self.resume == "auto":  # the newest complete one: incomplete ones are skipped with a warning
            found = newest_checkpoint(self.run_dir)
            if found is None:
                log.info("resume=auto: no checkpoint in %s yet, starting fresh", self.run_dir)
            return found
        path = Path(self.resume)
        if path.is_dir():
            refuse_pickles(path)
        if not (path / "state.json").is_file():
            raise FileNotFoundError(f"trainer.resume: {path} is not a checkpoint folder (expected {path}/state.json)")
        check_checkpoint(path)
        return path

    def fit(self) -> nn.Module:
        """Train until ``max_steps``; return the (unwrapped) network with its raw weights.

        Raises :class:`NonFiniteLossError` when the loss diverges, and :class:`~mmdiff.train.interrupt.TrainingInterrupted`
        (a ``SystemExit`` with code 130 or 143) after SIGINT (Ctrl-C) or SIGTERM: the current step finishes, a
        checkpoint is written and one line with the command that resumes is logged. The previous signal handlers
        are restored when ``fit`` returns or raises.
        """
        with self._stop:
            return self._fit()

    def _fit(self) -> nn.Module:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        if self.resume in (None, "", "none"):
            refuse_mixing(self.run_dir, overwrite=self.overwrite)  # before any work: runs never mix
        checkpoint = self._resume_from()
        # accelerate keeps one AcceleratorState per process and refuses a second Accelerator with other settings;
        # reset it (not the process group) so that several runs in one process (notebooks, tests) can differ.
        AcceleratorState._reset_state(reset_partial_state=False)
        if self.device.startswith("cuda:"):
            torch.cuda.set_device(int(self.device.split(":")[1]))  # one process: "cuda" below means this GPU
        acc = Accelerator(mixed_precision=self.mixed_precision, cpu=self.device == "cpu")
        self._stop.arm(acc.num_processes)
        if self.overwrite and acc.is_main_process:
            move_aside(self.run_dir)
        acc.wait_for_everyone()
        self._prepare_adapter(acc, fresh=checkpoint is None)
        net = self.net.to(acc.device)
        if self.init_from:
            _, _, report = load_matching_weights(net, self.init_from)
            if acc.is_main_process:
                log.info("%s", report)
        optimizer = self.optimizer_factory(parameter_groups(net))
        for group in optimizer.param_groups:  # a module's own learning rate (the built-in text encoder's lr_scale)
            group["lr"] *= group.get("lr_scale", 1.0)
        lr_scheduler = get_scheduler(
            self.lr_schedule, optimizer, num_warmup_steps=self.lr_warmup_steps, num_training_steps=self.max_steps
        )
        ema = EMAModel(net.parameters(), decay=self.ema_decay)  # under init_from: from the loaded weights
        start = 0
        if checkpoint is not None:
            state = load_state(checkpoint)
            net.load_state_dict(load_weights(checkpoint, ema=False))
            optimizer.load_state_dict(state["optimizer"])
            lr_scheduler.load_state_dict(state["lr_scheduler"])
            ema.load_state_dict(state["ema"])
            set_rng_state(state["rng"])
            start = int(state["step"])
            log.info("resumed from %s at step %d", checkpoint, start)
        ema.to(acc.device)
        model = torch.compile(net) if self.compile else net
        model, optimizer = acc.prepare(model, optimizer)
        self._acc, self._net, self._ema = acc, net, ema

        summary = getattr(self.dataset, "summary", None)
        if acc.is_main_process and callable(summary):
            log.info("%s", summary())
        if acc.is_main_process:
            log.info(
                "training %s parameters on %s x %d process(es), global batch %d (%d x %d x grad_accum %d), "
                "steps %d -> %d",
                f"{sum(p.numel() for p in net.parameters()):,}",
                acc.device.type,
                acc.num_processes,
                self.batch_size * acc.num_processes * self.grad_accum,
                self.batch_size,
                acc.num_processes,
                self.grad_accum,
                start,
                self.max_steps,
            )
        batches = self._batches(acc, start)

        writer = self._writer() if acc.is_main_process else None
        bar = None
        if acc.is_main_process and self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.max_steps, initial=start, desc="training", dynamic_ncols=True)
        # samples/s counts training only: time spent writing demo samples and checkpoints is left out
        losses, last_time, samples_seen, paused = _LossMonitor(acc, start), time.perf_counter(), 0, 0.0
        model.train()
        for step in range(start + 1, self.max_steps + 1):
            total = torch.zeros((), device=acc.device)
            for micro in range(self.grad_accum):
                batch = next(batches)
                seeds = batch.pop("_seed").tolist()
                keys = batch.pop("_key", None)  # item keys, only for an adapter with a latent cache
                batch = {k: v.to(acc.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
                if keys is not None:
                    batch["_keys"] = list(keys)  # the adapter pops it
                gens = noise_generators(seeds, acc.device)
                x0, known = self.adapter.encode(batch, generator=gens)  # known: the adapter's own inputs
                cond = {**training_conditions(self.conditioner, batch, gens), **known}
                if self.adapter.noise_prior is not None:  # the noise the adapter's model trains with
                    cond["noise_prior"] = self.adapter.noise_prior
                sync = micro == self.grad_accum - 1
                with nullcontext() if sync else acc.no_sync(model), acc.autocast():
                    loss = self.objective(model, x0, generator=gens, **cond).mean() / self.grad_accum
                acc.backward(loss)
                total += loss.detach()
                samples_seen += x0.shape[0] * acc.num_processes
            grad_norm = acc.clip_grad_norm_(model.parameters(), self.grad_clip) if self.grad_clip else None
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(net.parameters())

            losses.add(step, total, grad_norm)  # stays on the device: no host sync per step
            if bar is not None:
                bar.update(1)

            signum = self._stop.should_stop()  # all processes agree on it
            final = step == self.max_steps
            log_now = final or step % self.log_every == 0
            sample_now = final or bool(self.sample_every and step % self.sample_every == 0)
            save_now = final or bool(signum) or bool(self.checkpoint_every and step % self.checkpoint_every == 0)
            if log_now or sample_now or save_now:  # the host reads the loss only here
                stats = losses.read(step, self.run_dir)  # raises NonFiniteLossError before anything is saved
                lr = lr_scheduler.get_last_lr()[0]
                if bar is not None:
                    bar.set_postfix(loss=f"{stats.smoothed:.4f}", lr=f"{lr:.2e}")
            if log_now and writer is not None:
                now = time.perf_counter()
                rate = samples_seen / max(now - last_time - paused, 1e-9)
                writer.add_scalar("train/loss", stats.loss, step)
                writer.add_scalar("train/loss_smoothed", stats.smoothed, step)
                writer.add_scalar("train/lr", lr, step)
                writer.add_scalar("train/samples_per_second", rate, step)
                if stats.grad_norm is not None:
                    writer.add_scalar("train/grad_norm", stats.grad_norm, step)
                if bar is None:  # no progress bar: the log carries the progress instead
                    log.info(
                        "step %d/%d: loss %.4f (smoothed %.4f), lr %.2e, %.1f samples/s",
                        step,
                        self.max_steps,
                        stats.loss,
                        stats.smoothed,
                        lr,
                        rate,
                    )
                last_time, samples_seen, paused = now, 0, 0.0
            pause_start = time.perf_counter()
            if acc.is_main_process and sample_now:
                self.write_samples(step, writer)
            saved = self.save(step, optimizer, lr_scheduler) if save_now else None
            paused += time.perf_counter() - pause_start
            if signum and not final:
                _close(bar, writer)
                self._interrupted(signum, step, saved)
        _close(bar, writer)
        acc.wait_for_everyone()
        return net

    # ---- pieces ------------------------------------------------------------------------------------------------
    def _prepare_adapter(self, acc: Any, fresh: bool) -> None:
        """Let an adapter that keeps things with the run (a latent adapter: its codec copy and latent statistics)
        set them up once, on the main process, before training; the others then read what it stored. What it
        recorded goes into the config saved with each checkpoint."""
        prepare = getattr(self.adapter, "prepare_run", None)
        if not callable(prepare):
            return
        setup = prepare(self.dataset, self.run_dir, fresh=fresh, device=acc.device) if acc.is_main_process else None
        acc.wait_for_everyone()
        if not acc.is_main_process:
            setup = prepare(self.dataset, self.run_dir, fresh=False, device=acc.device)
        self.config_yaml = record_run_setup(self.config_yaml, "adapter", setup, self.run_dir)

    def _writer(self):
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def _interrupted(self, signum: int, step: int, checkpoint: Path) -> None:
        command = resume_command(self.run_dir)
        message = (
            f"{signal.Signals(signum).name}: stopped after step {step} and saved {checkpoint}; resume with: {command}"
        )
        if self._acc.is_main_process:
            log.warning("%s", message)
        raise TrainingInterrupted(signum, step, checkpoint, command, message)

    def _check_weights_finite(self, step: int) -> None:
        """Never save non-finite weights (raw or EMA): one device reduction, read once per checkpoint."""
        tensors = [*self._net.parameters(), *self._ema.shadow_params]
        if not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            found = checkpoint_dirs(self.run_dir)
            raise NonFiniteLossError(
                f"step {step}: the weights are not finite, so no checkpoint was written. Last checkpoint: "
                f"{found[-1] if found else 'none'}. Try a lower optim.lr, a tighter trainer.grad_clip, or bf16 "
                "instead of fp16."
            )

    def ema_weights(self) -> dict[str, torch.Tensor]:
        """The EMA weights as a state dict of the network (buffers are taken from the live network)."""
        weights = dict(self._net.state_dict())
        for (name, _), shadow in zip(self._net.named_parameters(), self._ema.shadow_params):
            weights[name] = shadow
        return weights

    def save(self, step: int, optimizer, lr_scheduler) -> Path:
        """Write checkpoint ``step`` (the main process writes, all wait for it); return its folder."""
        acc = self._acc
        self._check_weights_finite(step)
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {
                "optimizer": optimizer.state_dict(),
                "lr_scheduler": lr_scheduler.state_dict(),
                "ema": self._ema.state_dict(),
                "rng": rng_state(),
            }
            path = save_checkpoint(
                self.run_dir,
                step,
                model=self._net.state_dict(),
                ema=self.ema_weights(),
                state=state,
                config_yaml=self.config_yaml,
                keep=self.keep_checkpoints,
            )
            log.info("step %d: checkpoint %s", step, path)
        acc.wait_for_everyone()
        return self.run_dir / "checkpoints" / f"step_{step:06d}"

    def _batches(self, acc: Any, start: int) -> Any:
        """Endless training micro-batches of this process from step ``start`` on, each with ``"_seed"``: a map-style
        dataset through :class:`StreamBatchSampler`, a streaming one (shards) through :func:`streaming_batches`; the
        same positions, seeds and process split either way, so resume is exact for both."""
        workers = resolve_workers(self.num_workers, self.dataset, acc.device.type, acc.num_processes)
        if acc.is_main_process:
            log.info("data: %d loader worker(s) per process (trainer.num_workers=%s)", workers, self.num_workers)
        settings = dict(
            num_workers=workers,
            worker_init_fn=_leave_signals_to_main if workers else None,
            pin_memory=acc.device.type == "cuda",
        )
        if isinstance(self.dataset, StreamingDataset):
            return streaming_batches(
                self.dataset,
                batch_size=self.batch_size,
                seed=self.seed,
                rank=acc.process_index,
                world_size=acc.num_processes,
                start_micro_batch=start * self.grad_accum,
                **settings,
            )
        sampler = StreamBatchSampler(
            len(self.dataset),
            self.batch_size,
            self.seed,
            acc.process_index,
            acc.num_processes,
            start_micro_batch=start * self.grad_accum,
        )
        prefetch = {"prefetch_factor": 4} if workers else {}  # batches queued per worker: smooths slow files
        keyed = _Keyed(self.dataset, item_keys=bool(getattr(self.adapter, "uses_item_keys", False)))
        return iter(DataLoader(keyed, batch_sampler=sampler, **settings, **prefetch))

    def _reconstructions(self) -> Samples:
        """Demo items of an objective that reconstructs (an autoencoder): the first ``generate.num_samples`` training
        items (fixed seeds) each followed by its reconstruction."""
        from torch.utils.data import default_collate

        items = first_items(self.dataset, self.generate.num_samples, self.seed)
        n = len(items)
        seeds = [self.seed + i for i in range(n)]
        device = self._acc.device
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in default_collate(items).items()}
        x0, _ = self.adapter.encode(batch, generator=noise_generators(seeds, device))
        with torch.no_grad():
            recon = self.objective.reconstruct(self._net, x0)
        pairs = [m for pair in zip(self.adapter.decode(x0), self.adapter.decode(recon)) for m in pair]
        captions = [c for i in range(n) for c in (f"item {i}: input", f"item {i}: reconstruction")]
        return Samples(pairs, [s for s in seeds for _ in range(2)], captions)

    def write_samples(self, step: int, writer=None) -> list[Path]:
        """Demo samples with the EMA weights into ``samples/step_N/``: generated with fixed seeds, or for an
        objective that reconstructs (an autoencoder), training items and their reconstructions."""
        params = list(self._net.parameters())
        self._ema.store(params)
        self._ema.copy_to(params)
        self._net.eval()
        try:
            if hasattr(self.objective, "reconstruct"):
                items = self._reconstructions()
            else:
                model = self.objective.model  # the same definition training uses and mmdiff.load reads
                with self._acc.autocast():
                    items = generate(
                        self.adapter,
                        self.conditioner,
                        model.denoiser(self._net),
                        self.generate,
                        schedule=model.schedule,
                        device=self._acc.device,
                    )
        finally:
            self._net.train()
            self._ema.restore(params)
        out = self.run_dir / "samples" / f"step_{step:06d}"
        if hasattr(self.objective, "reconstruct"):  # input_i beside reconstruction_i
            paths = [
                *self.adapter.write(items[0::2], out, "input"),
                *self.adapter.write(items[1::2], out, "reconstruction"),
            ]
        else:
            paths = self.adapter.write(items, out)
        preview = self.adapter.preview(items, out / "preview.png", items.captions)
        if writer is not None and preview is not None:
            import matplotlib.image

            image = matplotlib.image.imread(preview)[..., :3]
            writer.add_image("samples", torch.as_tensor(image).permute(2, 0, 1), step)
        log.info("step %d: %d samples in %s", step, len(items), out)
        return [*paths, *([preview] if preview is not None else [])]
