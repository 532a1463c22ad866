"""The training loop: any modality, one GPU or several (accelerate), resumable to the same weights.

What it does each optimizer step: ``grad_accum`` micro-batches from :class:`~mmdiff.train.stream.StreamBatchSampler`,
each encoded by the adapter, conditions dropped for classifier-free guidance, the per-sample diffusion loss with
per-sample noise generators (so the result does not depend on how the global batch is split over processes),
gradient clipping, an optimizer and LR-scheduler step, and an EMA update. Around it: a progress bar, TensorBoard
scalars, demo samples with fixed seeds every ``sample_every`` steps, and atomic checkpoints every
``checkpoint_every`` steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..checkpoints import load_state, load_weights, newest_checkpoint, rng_state, save_checkpoint, set_rng_state
from ..core import NetworkDenoiser, drop_conditions
from ..modality import ModalityAdapter
from .stream import StreamBatchSampler, noise_generators

log = logging.getLogger("mmdiff.train")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; raised before the step can touch the weights."""


class _Keyed(Dataset):
    """Passes ``(index, item_seed)`` keys to the dataset and adds the seed to each item as ``"_seed"``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        return {**self.dataset[key], "_seed": key[1]}


class Trainer:
    """Trains ``net`` on ``dataset`` through ``adapter`` with ``objective``; settings are plain keyword arguments.

    Args:
        adapter: the modality adapter (see ``conf/adapter``).
        net: the network ``net(x_t, t, **cond)``.
        dataset: the training data; keys are ``(index, item_seed)`` pairs.
        objective: the loss, e.g. :class:`~mmdiff.core.objectives.DiffusionLoss`.
        optimizer: a callable ``params -> torch.optim.Optimizer`` (Hydra ``_partial_: true``).
        run_dir: where checkpoints, samples, TensorBoard events and logs go.
        config_yaml: the resolved config, saved in each checkpoint.
        generate: generation settings for demo samples (``sampler``, ``steps``, ``guidance_scale``, ``num_samples``,
            ``seed`` ...).
        max_steps: optimizer steps to train for (a resumed run counts the steps already done).
        batch_size: samples per process per micro-batch; the global batch is ``batch_size * processes * grad_accum``.
        resume: ``None``, ``"auto"`` (the latest checkpoint in ``run_dir``, if any) or a checkpoint folder.
        device: ``"auto"`` (CUDA when available) or ``"cpu"``.
        log_every: steps between TensorBoard scalars; with ``progress=False`` also between log lines (loss, lr,
            samples/s), so that a batch job's log shows how far it got.
        progress: show a tqdm progress bar (main process only).
    """

    def __init__(
        self,
        *,
        adapter: ModalityAdapter,
        net: nn.Module,
        dataset: Dataset,
        objective: Any,
        optimizer: Callable[..., torch.optim.Optimizer],
        run_dir: str | Path,
        config_yaml: str = "",
        generate: dict[str, Any] | None = None,
        max_steps: int = 1000,
        batch_size: int = 64,
        grad_accum: int = 1,
        lr_schedule: str = "constant_with_warmup",
        lr_warmup_steps: int = 0,
        grad_clip: float | None = 1.0,
        ema_decay: float = 0.999,
        mixed_precision: str = "no",
        cond_dropout: float = 0.1,
        checkpoint_every: int = 500,
        keep_checkpoints: int = 3,
        sample_every: int = 500,
        log_every: int = 10,
        num_workers: int = 0,
        seed: int = 0,
        resume: str | None = None,
        device: str = "auto",
        compile: bool = False,
        progress: bool = True,
    ):
        if mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"trainer.mixed_precision: expected no, bf16 or fp16, got {mixed_precision!r}")
        if device not in ("auto", "cpu"):
            raise ValueError(f"trainer.device: expected auto or cpu, got {device!r}")
        for key, value in (("max_steps", max_steps), ("batch_size", batch_size), ("grad_accum", grad_accum)):
            if value < 1:
                raise ValueError(f"trainer.{key} must be >= 1, got {value}")
        self.adapter, self.net, self.dataset, self.objective = adapter, net, dataset, objective
        self.optimizer_factory, self.run_dir, self.config_yaml = optimizer, Path(run_dir), config_yaml
        self.generate = dict(generate or {})
        self.max_steps, self.batch_size, self.grad_accum = max_steps, batch_size, grad_accum
        self.lr_schedule, self.lr_warmup_steps, self.grad_clip = lr_schedule, lr_warmup_steps, grad_clip
        self.ema_decay, self.mixed_precision, self.cond_dropout = ema_decay, mixed_precision, cond_dropout
        self.checkpoint_every, self.keep_checkpoints = checkpoint_every, keep_checkpoints
        self.sample_every, self.log_every, self.num_workers = sample_every, log_every, num_workers
        self.seed, self.resume, self.device, self.compile, self.progress = seed, resume, device, compile, progress

    # ---- setup -------------------------------------------------------------------------------------------------
    def _resume_from(self) -> Path | None:
        if self.resume in (None, "", "none"):
            return None
        if self.resume == "auto":
            found = newest_checkpoint(self.run_dir)
            log.info("resume=auto: %s", f"resuming from {found}" if found else "no checkpoint yet, starting fresh")
            return found
        path = Path(self.resume)
        if not (path / "state.json").is_file():
            raise FileNotFoundError(f"trainer.resume: {path} is not a checkpoint folder (expected {path}/state.json)")
        return path

    def fit(self) -> nn.Module:
        """Train until ``max_steps``; return the (unwrapped) network with its raw weights."""
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        # accelerate keeps one AcceleratorState per process and refuses a second Accelerator with other settings;
        # reset it (not the process group) so that several runs in one process (notebooks, tests) can differ.
        AcceleratorState._reset_state(reset_partial_state=False)
        acc = Accelerator(mixed_precision=self.mixed_precision, cpu=self.device == "cpu")
        net = self.net.to(acc.device)
        optimizer = self.optimizer_factory(net.parameters())
        lr_scheduler = get_scheduler(
            self.lr_schedule, optimizer, num_warmup_steps=self.lr_warmup_steps, num_training_steps=self.max_steps
        )
        ema = EMAModel(net.parameters(), decay=self.ema_decay)
        start = 0
        checkpoint = self._resume_from()
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
        sampler = StreamBatchSampler(
            len(self.dataset),
            self.batch_size,
            self.seed,
            acc.process_index,
            acc.num_processes,
            start_micro_batch=start * self.grad_accum,
        )
        batches = iter(
            DataLoader(
                _Keyed(self.dataset),
                batch_sampler=sampler,
                num_workers=self.num_workers,
                pin_memory=acc.device.type == "cuda",
            )
        )
        _, null_cond = self.adapter.conditions(1, device=acc.device)

        writer = self._writer() if acc.is_main_process else None
        bar = None
        if acc.is_main_process and self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.max_steps, initial=start, desc="training", dynamic_ncols=True)
        # samples/s counts training only: time spent writing demo samples and checkpoints is left out
        smoothed, last_time, samples_seen, paused = None, time.perf_counter(), 0, 0.0
        model.train()
        for step in range(start + 1, self.max_steps + 1):
            total = torch.zeros((), device=acc.device)
            for micro in range(self.grad_accum):
                batch = next(batches)
                seeds = batch.pop("_seed").tolist()
                batch = {k: v.to(acc.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
                gens = noise_generators(seeds, acc.device)
                x0, cond = self.adapter.encode(batch, generator=gens)
                if cond and null_cond:
                    cond = drop_conditions(cond, null_cond, self.cond_dropout, gens)
                sync = micro == self.grad_accum - 1
                with nullcontext() if sync else acc.no_sync(model), acc.autocast():
                    loss = self.objective(model, x0, generator=gens, **cond).mean() / self.grad_accum
                self._check_finite(loss, step)
                acc.backward(loss)
                total += loss.detach()
                samples_seen += x0.shape[0] * acc.num_processes
            grad_norm = acc.clip_grad_norm_(model.parameters(), self.grad_clip) if self.grad_clip else None
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(net.parameters())

            value = acc.reduce(total, reduction="mean").item()
            smoothed = value if smoothed is None else 0.98 * smoothed + 0.02 * value
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{smoothed:.4f}", lr=f"{lr_scheduler.get_last_lr()[0]:.2e}")
            if writer is not None and (step % self.log_every == 0 or step == self.max_steps):
                now = time.perf_counter()
                rate = samples_seen / max(now - last_time - paused, 1e-9)
                writer.add_scalar("train/loss", value, step)
                writer.add_scalar("train/loss_smoothed", smoothed, step)
                writer.add_scalar("train/lr", lr_scheduler.get_last_lr()[0], step)
                writer.add_scalar("train/samples_per_second", rate, step)
                if grad_norm is not None:
                    writer.add_scalar("train/grad_norm", float(grad_norm), step)
                if bar is None:  # no progress bar: the log carries the progress instead
                    log.info(
                        "step %d/%d: loss %.4f (smoothed %.4f), lr %.2e, %.1f samples/s",
                        step,
                        self.max_steps,
                        value,
                        smoothed,
                        lr_scheduler.get_last_lr()[0],
                        rate,
                    )
                last_time, samples_seen, paused = now, 0, 0.0
            final, pause_start = step == self.max_steps, time.perf_counter()
            if acc.is_main_process and (final or (self.sample_every and step % self.sample_every == 0)):
                self.write_samples(step, writer)
            if final or (self.checkpoint_every and step % self.checkpoint_every == 0):
                self.save(step, optimizer, lr_scheduler)
            paused += time.perf_counter() - pause_start
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        acc.wait_for_everyone()
        return net

    # ---- pieces ------------------------------------------------------------------------------------------------
    def _writer(self):
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def _check_finite(self, loss: torch.Tensor, step: int) -> None:
        everywhere = self._acc.gather(loss.detach().reshape(1))
        if not torch.isfinite(everywhere).all():
            last = newest_checkpoint(self.run_dir)
            raise NonFiniteLossError(
                f"step {step}: the loss is {everywhere.tolist()} (not finite); stopped before the update, so the "
                f"weights are untouched. Last checkpoint: {last or 'none'}. Try a lower optim.lr, trainer.grad_clip, "
                "or bf16 instead of fp16."
            )

    def ema_weights(self) -> dict[str, torch.Tensor]:
        """The EMA weights as a state dict of the network (buffers are taken from the live network)."""
        weights = dict(self._net.state_dict())
        for (name, _), shadow in zip(self._net.named_parameters(), self._ema.shadow_params):
            weights[name] = shadow
        return weights

    def save(self, step: int, optimizer, lr_scheduler) -> None:
        acc = self._acc
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

    def write_samples(self, step: int, writer=None) -> list[Path]:
        """Generate demo samples with the EMA weights and fixed seeds into ``samples/step_N/``."""
        from ..pipeline import generate_media

        opts = dict(self.generate)
        n = int(opts.pop("num_samples", 4))
        params = list(self._net.parameters())
        self._ema.store(params)
        self._ema.copy_to(params)
        self._net.eval()
        try:
            denoiser = NetworkDenoiser(self._net, self.objective.schedule, self.objective.parameterization)
            with self._acc.autocast():
                items = generate_media(
                    self.adapter, denoiser, n, schedule=self.objective.schedule, device=self._acc.device, **opts
                )
        finally:
            self._net.train()
            self._ema.restore(params)
        out = self.run_dir / "samples" / f"step_{step:06d}"
        paths = self.adapter.write(items, out)
        preview = self.adapter.preview(items, out / "preview.png")
        if writer is not None:
            import matplotlib.image

            image = matplotlib.image.imread(preview)[..., :3]
            writer.add_image("samples", torch.as_tensor(image).permute(2, 0, 1), step)
        log.info("step %d: %d samples in %s", step, len(items), out)
        return [*paths, preview]
