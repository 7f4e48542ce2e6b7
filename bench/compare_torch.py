#!/usr/bin/env python3
"""The standard benchmark set of `wgrad bench` (src/bench.rs), in PyTorch, for comparison.

What it measures, per device (the CPU, and CUDA when present):

  (a) matmul n^3, fp32, GFLOP/s: 1024^3 and 4096^3 (--quick: 256^3 and 1024^3, as
      `wgrad bench --quick`). On CUDA, TF32 is disabled for the fp32 figure
      (torch.backends.cuda.matmul.allow_tf32 = False, torch.backends.cudnn.allow_tf32 = False)
      and the TF32 figure is reported on the next row.
  (b) 784-128-10, batch 128, Adam 1e-3, samples/s
  (c) 784-800-10, batch 128, SGD 0.01 with momentum 0.9, samples/s
  (d) 1024-4096-4096-4096-10, batch 1024, Adam 1e-3, samples/s (skipped by --quick)
  (e) 2-16-1, batch 4, Adam 1e-3, steps/s (the per-step overhead)

How, mirroring wgrad's `training_samples_per_second`: hidden layers are Linear + ReLU; the
output is softmax with cross-entropy (CrossEntropyLoss on the logits), or for one output
sigmoid with binary cross-entropy (BCEWithLogitsLoss). The data are deterministic, not
constant (x[r, c] = ((r*31 + c*17) % 255) / 255, class r % max(outputs, 2)) and resident on
the device. One epoch is `steps` batches (as wgrad: 500 for (e); 20 with --quick, else 100
for (b) and (c) and 10 for (d)) in a fresh random order each epoch (gathered by index, as
wgrad does), with the loss and accuracy summed on the device and read back once at the end
of the epoch. After one warm-up epoch, the figure is the median of 3 timed epochs; matmul
figures are the median of 5 timings of enough back-to-back products to last about 0.1 s,
after a warm-up. On CUDA, torch.cuda.synchronize() precedes every clock reading.

With --wgrad PATH it also runs `PATH bench --devices cpu|gpu|both [--quick]`, parses its table
(lines `name  figure unit  device`, as src/bench.rs `run` prints them) and prints the ratio
wgrad / PyTorch per row (above 1: wgrad is faster). wgrad's GPU rows are compared with
PyTorch's CUDA rows; wgrad reaches the GPU through Vulkan/Metal/DX12, PyTorch through CUDA.

With --burn PATH it also runs the Burn harness (bench/burn, built apart: `PATH --backend cpu`
for the CPU rows, `--backend wgpu` for the GPU rows), parses its rows the same way, and adds
wgrad / Burn and wgrad / (the faster of PyTorch and Burn) per row: the issue's bar is the faster
peer. All tools run one after the other in this one invocation, on the same idle machine.

--rounds N repeats the whole comparison N times, the tools taking turns in each round, and
reports each tool's median per row: on a machine whose speed drifts from minute to minute (a
shared VM), a tool timed at a fast moment is not favoured over one timed at a slow moment.

--mnist EPOCHS trains 784-128-10 (ReLU, softmax cross-entropy, Adam 1e-3, batch 128, shuffled
each epoch; with --mnist-model c, case (c)'s 784-800-10 with SGD 0.01, momentum 0.9) on the real MNIST files in data/mnist/ (pixels / 255) for EPOCHS epochs on the CPU
and prints the test accuracy and training samples/s; with --wgrad it runs `PATH train` with the
same settings beside it (equal accuracy after the same epochs is part of the speed target).

--parse-only FILE parses a saved `wgrad bench` table and prints its rows; it does not need
PyTorch (torch is imported only when benchmarks run).

Examples:
  python3 bench/compare_torch.py --quick --device cpu
  cargo build --release && python3 bench/compare_torch.py --wgrad target/release/wgrad
  ./target/release/wgrad bench --devices cpu --quick > /tmp/wb.txt
  python3 bench/compare_torch.py --parse-only /tmp/wb.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass


# ---------------------------------------------------------------------------------------------
# Rows and wgrad's table


@dataclass
class Row:
    """One benchmark figure: `name` as src/bench.rs spells it, `device` as printed."""

    name: str
    figure: float
    unit: str
    device: str

    @property
    def key(self) -> str:
        """What identifies the benchmark across tools: the set's letter, plus the size for (a)
        and a TF32 mark ("a:1024", "a:1024:tf32", "b", ...)."""
        letter = re.match(r"\s*\((\w)\)", self.name)
        key = letter.group(1) if letter else self.name.strip()
        size = re.search(r"(\d+)\s*(?:³|\^3)", self.name)
        if key == "a" and size:
            key += ":" + size.group(1)
        if "tf32" in self.name.lower():
            key += ":tf32"
        return key

    @property
    def device_class(self) -> str:
        """"cpu" or "gpu": what a wgrad row and a PyTorch row must share to be compared."""
        d = self.device.strip().lower()
        return "cpu" if d.startswith("cpu") else "gpu"


# `name  figure unit  device`, e.g.
#   (a) matmul 1024³                  109.1 GFLOP/s  CPU
#   (e) 2-16-1 adam                     833 steps/s  GPU: llvmpipe (LLVM 15.0.6, 256 bits) on Vulkan (Cpu)
# The name is padded to 28 characters and may hold digits and spaces; the figure is the first
# number followed by a unit ending in "/s"; the device is the rest of the line.
TABLE_LINE = re.compile(
    r"^(?P<name>\S.*?)\s+(?P<figure>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s+"
    r"(?P<unit>[A-Za-z]+/s)\s+(?P<device>\S.*?)\s*$"
)


def parse_wgrad_table(text: str) -> list[Row]:
    """The rows of a `wgrad bench` table; the header and any other line (warnings a driver
    printed, blank lines) are skipped."""
    rows = []
    for line in text.splitlines():
        if line.strip().startswith("benchmark"):
            continue
        m = TABLE_LINE.match(line)
        if m:
            rows.append(
                Row(m["name"].strip(), float(m["figure"]), m["unit"], m["device"].strip())
            )
    return rows


def run_wgrad(binary: str, device: str, quick: bool) -> list[Row]:
    """Runs `binary bench` for the devices asked and parses its table (its stderr passes
    through). An error is reported and gives no rows, so the PyTorch table still prints."""
    devices = {"cpu": "cpu", "cuda": "gpu", "all": "both"}[device]
    command = [binary, "bench", "--devices", devices] + (["--quick"] if quick else [])
    print(f"running {' '.join(command)}", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    except OSError as e:
        print(f"wgrad: cannot run {binary}: {e}", file=sys.stderr)
        return []
    if done.returncode != 0:
        print(f"wgrad: {binary} exited with status {done.returncode}", file=sys.stderr)
    rows = parse_wgrad_table(done.stdout)
    if not rows:
        print(f"wgrad: no table rows in its output:\n{done.stdout}", file=sys.stderr)
    return rows


def run_burn(binary: str, device: str, quick: bool) -> list[Row]:
    """Runs the Burn harness once per backend asked for and parses its rows (its `#` lines,
    first-step and per-step times, pass through to stderr)."""
    backends = {"cpu": ["cpu"], "cuda": ["wgpu"], "all": ["cpu", "wgpu"]}[device]
    rows: list[Row] = []
    for backend in backends:
        command = [binary, "--backend", backend] + (["--quick"] if quick else [])
        print(f"running {' '.join(command)}", file=sys.stderr, flush=True)
        try:
            done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        except OSError as e:
            print(f"burn: cannot run {binary}: {e}", file=sys.stderr)
            continue
        for line in done.stdout.splitlines():
            if line.startswith("#"):
                print(line, file=sys.stderr)
        if done.returncode != 0:
            print(f"burn: {binary} exited with status {done.returncode}", file=sys.stderr)
        found = parse_wgrad_table(done.stdout)
        if not found:
            print(f"burn: no table rows in its output:\n{done.stdout}", file=sys.stderr)
        rows += found
    return rows


def print_rows(rows: list[Row]) -> None:
    """The parsed rows of a wgrad table, one per line (--parse-only)."""
    print(f"{'key':<12} {'benchmark':<28} {'figure':>12} {'unit':<10} {'class':<5} device")
    for r in rows:
        print(
            f"{r.key:<12} {r.name:<28} {r.figure:>12.1f} {r.unit:<10} "
            f"{r.device_class:<5} {r.device}"
        )


# ---------------------------------------------------------------------------------------------
# The machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(torch) -> None:
    print(f"CPU:     {cpu_model()}, {os.cpu_count()} logical cores")
    print(f"OS:      {platform.platform()}, Python {platform.python_version()}")
    print(f"PyTorch: {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        print(
            f"GPU:     {torch.cuda.get_device_name(0)}, {props.total_memory / 2**30:.0f} GiB, "
            f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
        )
    else:
        print("GPU:     none (torch.cuda.is_available() is False)")
    print(flush=True)


# ---------------------------------------------------------------------------------------------
# The benchmarks


@dataclass
class TrainCase:
    """A training benchmark of the standard set (src/bench.rs `standard_cases`)."""

    name: str
    widths: tuple[int, ...]
    batch: int
    optimizer: str  # "adam" or "momentum"
    lr: float


CASES = [
    TrainCase("(b) 784-128-10 adam", (784, 128, 10), 128, "adam", 1e-3),
    TrainCase("(c) 784-800-10 momentum", (784, 800, 10), 128, "momentum", 0.01),
    TrainCase("(d) 1024-4096x3-10 adam", (1024, 4096, 4096, 4096, 10), 1024, "adam", 1e-3),
    TrainCase("(e) 2-16-1 adam", (2, 16, 1), 4, "adam", 1e-3),
]


def steps_for(case: TrainCase, quick: bool) -> int:
    """Steps of one timed epoch, as src/bench.rs `run` chooses them."""
    if case.batch == 4:
        return 500
    if quick:
        return 20
    return 10 if case.batch == 1024 else 100


class Clock:
    """Wall-clock seconds that wait for the device's queued work first."""

    def __init__(self, torch, device: str):
        self.torch = torch
        self.cuda = device == "cuda"

    def now(self) -> float:
        if self.cuda:
            self.torch.cuda.synchronize()
        return time.perf_counter()


def matmul_gflops(torch, device: str, n: int, repeats: int = 5) -> float:
    """fp32 GFLOP/s of an n×n×n product (TF32 as the caller's flags say)."""
    clock = Clock(torch, device)
    a = torch.rand(n, n, device=device, dtype=torch.float32)
    b = torch.rand(n, n, device=device, dtype=torch.float32)
    c = torch.empty(n, n, device=device, dtype=torch.float32)
    for _ in range(3):
        torch.mm(a, b, out=c)
    started = clock.now()
    torch.mm(a, b, out=c)
    once = max(clock.now() - started, 1e-6)
    inner = max(1, min(1000, int(0.1 / once)))
    times = []
    for _ in range(repeats):
        started = clock.now()
        for _ in range(inner):
            torch.mm(a, b, out=c)
        times.append((clock.now() - started) / inner)
    return 2.0 * n**3 / statistics.median(times) / 1e9


def training_samples_per_second(torch, device: str, case: TrainCase, steps: int) -> float:
    """Training samples/s of `case`: one warm-up epoch of `steps` steps, then the median of 3."""
    nn = torch.nn
    torch.manual_seed(0)
    widths = case.widths
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers).to(device)
    if case.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=case.lr)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=case.lr, momentum=0.9)
    inputs, outputs = widths[0], widths[-1]
    rows = steps * case.batch
    r = torch.arange(rows, device=device).unsqueeze(1)
    col = torch.arange(inputs, device=device).unsqueeze(0)
    x = ((r * 31 + col * 17) % 255).to(torch.float32) / 255.0
    classes = torch.arange(rows, device=device) % max(outputs, 2)
    if outputs == 1:
        loss_fn = nn.BCEWithLogitsLoss()
        y = classes.to(torch.float32).unsqueeze(1)
    else:
        loss_fn = nn.CrossEntropyLoss()
        y = classes
    generator = torch.Generator(device=device)
    generator.manual_seed(0)
    clock = Clock(torch, device)

    def epoch() -> float:
        started = clock.now()
        order = torch.randperm(rows, device=device, generator=generator)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        for start in range(0, rows, case.batch):
            index = order[start : start + case.batch]
            xb, yb = x[index], y[index]
            logits = model(xb)
            loss = loss_fn(logits, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                loss_sum += loss.detach() * len(index)
                if outputs == 1:
                    correct += ((logits > 0) == (yb > 0.5)).sum()
                else:
                    correct += (logits.argmax(dim=1) == yb).sum()
        # The end-of-epoch metrics read-back, as wgrad's `take_train_metrics`.
        _ = (loss_sum / rows).item(), correct.item() / rows
        return clock.now() - started

    epoch()
    seconds = statistics.median(epoch() for _ in range(3))
    return rows / seconds


def run_torch(devices: list[str], quick: bool) -> list[Row]:
    """The standard set on each device, printing each row as it is measured."""
    import torch  # imported here so that --parse-only works without PyTorch

    describe_machine(torch)
    sizes = [256, 1024] if quick else [1024, 4096]
    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        print(f"{row.name:<28} {row.figure:>10.1f} {row.unit:<10} {row.device}", flush=True)

    for device in devices:
        label = "CPU" if device == "cpu" else f"CUDA: {torch.cuda.get_device_name(0)}"
        for n in sizes:
            if device == "cuda":
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
                add(Row(f"(a) matmul {n}³", matmul_gflops(torch, device, n), "GFLOP/s", label))
                torch.backends.cuda.matmul.allow_tf32 = True
                torch.backends.cudnn.allow_tf32 = True
                tf32 = matmul_gflops(torch, device, n)
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
                add(Row(f"(a) matmul {n}³ TF32", tf32, "GFLOP/s", label))
            else:
                add(Row(f"(a) matmul {n}³", matmul_gflops(torch, device, n), "GFLOP/s", label))
        for case in CASES:
            if quick and len(case.widths) > 3:
                continue
            samples = training_samples_per_second(torch, device, case, steps_for(case, quick))
            if case.batch == 4:
                add(Row(case.name, samples / case.batch, "steps/s", label))
            else:
                add(Row(case.name, samples, "samples/s", label))
    return rows


# ---------------------------------------------------------------------------------------------
# MNIST accuracy after the same epochs

MNIST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "mnist")


def read_idx(name: str):
    """An IDX file of data/mnist (gzipped) as a numpy array."""
    import gzip

    import numpy as np

    with gzip.open(os.path.join(MNIST_DIR, name + ".gz"), "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


# The networks --mnist can train: the standard set's case (b) and case (c).
MNIST_MODELS = {"b": CASES[0], "c": CASES[1]}


def torch_mnist(torch, epochs: int, case: TrainCase) -> tuple[float, float]:
    """(test accuracy %, training samples/s) of `case`'s network trained as `wgrad train`
    does."""
    nn = torch.nn
    torch.manual_seed(0)
    x = torch.from_numpy(read_idx("train-images-idx3-ubyte").reshape(-1, 784).astype("float32") / 255)
    y = torch.from_numpy(read_idx("train-labels-idx1-ubyte").astype("int64"))
    x_test = torch.from_numpy(read_idx("t10k-images-idx3-ubyte").reshape(-1, 784).astype("float32") / 255)
    y_test = torch.from_numpy(read_idx("t10k-labels-idx1-ubyte").astype("int64"))
    hidden = case.widths[1]
    model = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    if case.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=case.lr)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=case.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    seconds = 0.0
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(len(x))
        for start in range(0, len(x), 128):
            index = order[start : start + 128]
            loss = loss_fn(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - started
    with torch.no_grad():
        accuracy = (model(x_test).argmax(dim=1) == y_test).float().mean().item()
    return 100.0 * accuracy, epochs * len(x) / seconds


def wgrad_mnist(binary: str, epochs: int, case: TrainCase) -> tuple[float, float] | None:
    """(test accuracy %, training samples/s) from `binary train` on the CPU, or None."""
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        layers = ",".join(str(w) for w in case.widths)
        command = [binary, "train", "--device", "cpu", "--epochs", str(epochs), "--batch-size",
                   "128", "--layers", layers, "--optimizer", case.optimizer, "--lr", str(case.lr),
                   "--quiet", "--out", out]
        if case.optimizer == "momentum":
            command += ["--momentum", "0.9"]
        print(f"running {' '.join(command)}", file=sys.stderr, flush=True)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        history = os.path.join(out, "history.csv")
        lines = open(history, encoding="utf-8").read().splitlines() if os.path.exists(history) else []
    text = done.stdout + done.stderr
    accuracy = re.search(r"test accuracy ([0-9.]+)%", text)
    if done.returncode != 0 or not accuracy or len(lines) < 2:
        print(f"wgrad train failed:\n{text}", file=sys.stderr)
        return None
    # history.csv: one row per epoch; samples/s of the training steps alone, as PyTorch's.
    column = lines[0].split(",").index("samples_per_second")
    per_epoch = [float(line.split(",")[column]) for line in lines[1:]]
    return float(accuracy[1]), epochs / sum(1.0 / s for s in per_epoch)


def print_mnist(torch, binary: str | None, epochs: int, model: str) -> None:
    case = MNIST_MODELS[model]
    print(f"MNIST {case.name}, lr {case.lr}, batch 128, {epochs} epochs, CPU")
    print(f"{'tool':<10} {'test accuracy':>14} {'samples/s':>12}")
    results = [("PyTorch", torch_mnist(torch, epochs, case))]
    if binary:
        results.append(("wgrad", wgrad_mnist(binary, epochs, case)))
    for tool, result in results:
        if result:
            print(f"{tool:<10} {result[0]:>13.2f}% {result[1]:>12.0f}")


# ---------------------------------------------------------------------------------------------
# The comparison


def median_rows(rounds: list[list[Row]]) -> list[Row]:
    """The rows of the first round, each with the median of its figure over all rounds (rows
    missing from a round are left out of that row's median)."""
    if not rounds:
        return []
    figures: dict[tuple[str, str], list[float]] = {}
    for rows in rounds:
        for r in rows:
            figures.setdefault((r.key, r.device_class), []).append(r.figure)
    return [
        Row(r.name, statistics.median(figures[(r.key, r.device_class)]), r.unit, r.device)
        for r in rounds[0]
    ]


def print_comparison(torch_rows: list[Row], wgrad_rows: list[Row], burn_rows: list[Row]) -> None:
    """One line per benchmark and device class: each tool's figure, and wgrad over each peer
    (above 1: wgrad is faster). With Burn's rows, the last column is wgrad over the faster of
    the two peers, which is what the issue's targets are measured against."""
    with_burn = bool(burn_rows)
    print()
    header = f"{'benchmark':<28} {'device':<5} {'unit':<10} {'PyTorch':>12}"
    header += f" {'Burn':>12}" if with_burn else ""
    header += f" {'wgrad':>12} {'wgrad/PyTorch':>14}"
    header += f" {'wgrad/Burn':>11} {'wgrad/best':>11}" if with_burn else ""
    print(header)
    print("-" * len(header))
    wgrad_by_key = {(r.key, r.device_class): r for r in wgrad_rows}
    burn_by_key = {(r.key, r.device_class): r for r in burn_rows}

    def cell(row: Row | None, width: int) -> str:
        return f"{row.figure:>{width}.1f}" if row else f"{'-':>{width}}"

    def ratio(w: Row | None, peer: float | None, width: int) -> str:
        return f"{w.figure / peer:>{width}.3f}" if w and peer else f"{'-':>{width}}"

    seen = set()
    for t in torch_rows:
        k = (t.key, t.device_class)
        seen.add(k)
        w, b = wgrad_by_key.get(k), burn_by_key.get(k)
        line = f"{t.name:<28} {t.device_class:<5} {t.unit:<10} {t.figure:>12.1f}"
        line += f" {cell(b, 12)}" if with_burn else ""
        line += f" {cell(w, 12)} {ratio(w, t.figure, 14)}"
        if with_burn:
            best = max(t.figure, b.figure) if b else t.figure
            line += f" {ratio(w, b.figure if b else None, 11)} {ratio(w, best, 11)}"
        print(line)
    for w in wgrad_rows:
        if (w.key, w.device_class) not in seen:
            print(f"{w.name:<28} {w.device_class:<5} {w.unit:<10} {'-':>12} {w.figure:>12.1f}")
    devices = sorted({r.device for r in wgrad_rows})
    if devices:
        print()
        print("wgrad devices: " + "; ".join(devices))
    burn_devices = sorted({r.device for r in burn_rows})
    if burn_devices:
        print("Burn devices: " + "; ".join(burn_devices))
    print("Device 'gpu' is CUDA for PyTorch and wgpu (Vulkan/Metal/DX12) for wgrad and Burn.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="wgrad's standard benchmark set in PyTorch, optionally beside wgrad's own."
    )
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda", "all"],
        default="all",
        help="where to run: cpu, cuda, or all (the CPU, and CUDA when present; default)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer steps; no (d) and no 4096³ (as wgrad --quick)"
    )
    parser.add_argument(
        "--threads", type=int, help="PyTorch CPU threads (torch.set_num_threads); default: its own"
    )
    parser.add_argument(
        "--wgrad", metavar="PATH", help="also run `PATH bench` and print wgrad / PyTorch per row"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="repeat the comparison N times, tools taking turns, and report medians (default 1)",
    )
    parser.add_argument(
        "--burn",
        metavar="PATH",
        help="also run the Burn harness (bench/burn's burn-bench) and compare with it too",
    )
    parser.add_argument(
        "--mnist",
        type=int,
        metavar="EPOCHS",
        help="instead of the set: MNIST test accuracy and samples/s after EPOCHS epochs (CPU)",
    )
    parser.add_argument(
        "--mnist-model",
        choices=sorted(MNIST_MODELS),
        default="b",
        help="the network --mnist trains: case (b)'s 784-128-10 with Adam (default) or "
        "case (c)'s 784-800-10 with SGD and momentum",
    )
    parser.add_argument(
        "--parse-only",
        metavar="FILE",
        help="parse a saved `wgrad bench` table, print its rows and exit (no PyTorch needed)",
    )
    args = parser.parse_args(argv)

    if args.parse_only:
        with open(args.parse_only, encoding="utf-8") as f:
            rows = parse_wgrad_table(f.read())
        print_rows(rows)
        if not rows:
            print(f"no wgrad table rows in {args.parse_only}", file=sys.stderr)
            return 1
        return 0

    for flag, path in (("--wgrad", args.wgrad), ("--burn", args.burn)):
        if path and not os.access(path, os.X_OK):
            parser.error(f"{flag} {path}: not an executable file")

    try:
        import torch
    except ImportError:
        print("PyTorch is not installed (pip install torch); only --parse-only works without it")
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mnist:
        print_mnist(torch, args.wgrad, args.mnist, args.mnist_model)
        return 0
    if args.device == "cpu":
        devices = ["cpu"]
    elif args.device == "cuda":
        if not torch.cuda.is_available():
            print("--device cuda: torch.cuda.is_available() is False", file=sys.stderr)
            return 2
        devices = ["cuda"]
    else:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    rounds: list[tuple[list[Row], list[Row], list[Row]]] = []
    for round_index in range(max(args.rounds, 1)):
        if args.rounds > 1:
            print(f"round {round_index + 1} of {args.rounds}", file=sys.stderr, flush=True)
        torch_rows = run_torch(devices, args.quick)
        wgrad_rows: list[Row] = []
        if args.wgrad:
            # wgrad's GPU runs only where PyTorch has a GPU to compare with, unless asked for.
            wgrad_device = args.device if args.device != "all" or "cuda" in devices else "cpu"
            wgrad_rows = run_wgrad(args.wgrad, wgrad_device, args.quick)
        burn_rows: list[Row] = []
        if args.burn:
            burn_device = args.device if args.device != "all" or "cuda" in devices else "cpu"
            burn_rows = run_burn(args.burn, burn_device, args.quick)
        rounds.append((torch_rows, wgrad_rows, burn_rows))
    torch_rows, wgrad_rows, burn_rows = (median_rows([r[i] for r in rounds]) for i in range(3))
    if args.rounds > 1:
        print(f"\nmedians of {args.rounds} rounds")
    print_comparison(torch_rows, wgrad_rows, burn_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
