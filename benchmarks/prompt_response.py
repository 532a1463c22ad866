"""Which prompt words does a trained text model respond to, and at which noise levels? (issue 12)

Prompt adherence (``mmdiff eval``) says whether generated clips match their prompts. When an attribute stays at
chance, this tells a model that never learnt the word from one that learnt it but samples it badly (or whose clips
the estimator misreads): for each pair of prompts that differ in one word ("a slow sine melody" / "a fast sine
melody"), real clips of the run's data are noised to each sigma, and the run's denoiser (EMA weights) estimates the
clean clip under each prompt of the pair, unguided. The report gives

    response(sigma) = RMS(D(x_sigma; prompt A) - D(x_sigma; prompt B)) / RMS(x0)

in the model's space: 0 when the word changes nothing. A word the model follows changes the estimate most at high
noise, where the clip's content is still open; the same noise and clips are used for every pair, so pairs compare.

    python benchmarks/prompt_response.py RUN \\
        --pair "a slow sine melody in a middle register|a fast sine melody in a middle register" \\
        --pair "a sine melody in a low register|a sine melody in a high register"
    python benchmarks/prompt_response.py RUN --pair "a red circle moving left|a red circle moving right"

Writes ``prompt_response_<run name>.md`` to ``--out`` (default ``benchmarks/results``), and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch.utils.data import default_collate

import mmdiff
from mmdiff.data import first_items

SIGMAS = (10.0, 3.0, 1.0, 0.3, 0.1)


def prompt_response(
    run: str | Path, pairs: list[tuple[str, str]], n: int = 16, sigmas=SIGMAS, seed: int = 0
) -> tuple[dict[tuple[str, str], list[float]], Path]:
    """``({pair: [response at each sigma]}, the checkpoint)`` for the run's EMA weights on its first ``n`` data
    items."""
    pipe = mmdiff.load(run, device="cpu")
    items = first_items(instantiate(pipe.config.data), n, seed=seed)
    batch = default_collate([{k: v for k, v in item.items() if torch.is_tensor(v)} for item in items])
    x0, _ = pipe.adapter.encode(batch)  # (n, *sample shape)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    scale = x0.pow(2).mean().sqrt().item()
    conditions = {p: pipe.conditioner.request(len(x0), prompt=p) for pair in pairs for p in pair}
    result = {pair: [] for pair in pairs}
    with torch.no_grad():
        for sigma in sigmas:
            x = x0 + sigma * noise
            s = torch.full((len(x0),), float(sigma))
            estimate = {p: pipe.denoiser(x, s, **cond) for p, cond in conditions.items()}
            for a, b in pairs:
                result[(a, b)].append((estimate[a] - estimate[b]).pow(2).mean().sqrt().item() / scale)
    return result, pipe.checkpoint


def report_name(run: Path) -> str:
    """The report's name: the run folder's name, or ``<run>_<checkpoint>`` for a checkpoint folder of a run."""
    path = run.resolve()
    return f"{path.parent.parent.name}_{path.name}" if path.parent.name == "checkpoints" else path.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a trained text-conditioned run (its folder or a checkpoint)")
    parser.add_argument("--pair", action="append", required=True, help='two prompts split by "|"')
    parser.add_argument("--n", type=int, default=16, help="data items (default 16)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    pairs = []
    for text in args.pair:
        parts = [p.strip() for p in text.split("|")]
        if len(parts) != 2 or not all(parts):
            parser.error(f'--pair {text!r}: expected two prompts split by "|"')
        pairs.append((parts[0], parts[1]))
    torch.set_num_threads(2)
    start = time.perf_counter()
    result, checkpoint = prompt_response(args.run, pairs, args.n)
    name = report_name(args.run)
    lines = [
        f"# Prompt response: {checkpoint}",
        "",
        f"`python benchmarks/prompt_response.py {args.run} --pair ...` ({datetime.date.today()}, CPU, "
        f"{time.perf_counter() - start:.0f} s): the RMS difference between the denoiser's clean estimates under the "
        f"two prompts of a pair, over the RMS of the clean clips; {args.n} data items noised with the same noise, "
        "EMA weights, no guidance.",
        "",
        "| prompt A | prompt B | " + " | ".join(f"sigma {s:g}" for s in SIGMAS) + " |",
        "|---|---|" + "---:|" * len(SIGMAS),
        *(f"| {a} | {b} | " + " | ".join(f"{v:.3f}" for v in values) + " |" for (a, b), values in result.items()),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"prompt_response_{name}.md"
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
