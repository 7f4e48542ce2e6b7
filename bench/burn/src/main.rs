//! `burn-bench`: wgrad's standard benchmark set (`wgrad bench`, src/bench.rs) in Burn, for
//! comparison. A comparison harness only: it is not part of wgrad and wgrad does not depend on it.
//!
//! What it measures, on Burn's pure-CPU backend (`flex`) or its wgpu backend (pinned to Vulkan;
//! WGSL kernels, or SPIR-V with the `spirv` feature):
//!
//!   (a) matmul n³, fp32, GFLOP/s: 1024³ and 4096³ (--quick: 256³ and 1024³)
//!   (b) 784-128-10, batch 128, Adam 1e-3, samples/s
//!   (c) 784-800-10, batch 128, SGD 0.01 with momentum 0.9, samples/s
//!   (d) 1024-4096-4096-4096-10, batch 1024, Adam 1e-3, samples/s (skipped by --quick)
//!   (e) 2-16-1, batch 4, Adam 1e-3, steps/s (the per-step overhead)
//!
//! The protocol is bench/compare_torch.py's, which mirrors wgrad's own: hidden layers are Linear
//! + ReLU; the output is softmax cross-entropy on the logits, or for one output sigmoid binary
//! cross-entropy on the logits. Adam uses PyTorch's and wgrad's epsilon (1e-8, not Burn's 1e-5);
//! momentum has no dampening (PyTorch's default, not Burn's 0.1). The data are deterministic and
//! resident on the device: x[r][c] = ((r*31 + c*17) % 255) / 255, class r % max(outputs, 2).
//! One epoch is `steps` batches (500 for (e); 20 with --quick, else 10 for (d) and 100 for (b)
//! and (c)) in a fresh random order (a host-side permutation uploaded once per epoch, then
//! gathered by index on the device), with the loss and the correct count summed on the device
//! and read back once at the end of the epoch. After one warm-up epoch the figure is the median
//! of 3 timed epochs. Matmul figures are the median of 5 timings of enough back-to-back products
//! to last about 0.1 s, after a warm-up, each timing ending with a device sync.
//!
//! It also reports, as `#` lines that table parsers skip: the seconds of the very first training
//! step of each case (everything it compiles and autotunes included; on wgpu the device itself is
//! opened before and timed apart), and the steady milliseconds per step (the median epoch / steps).
//! On wgpu, CubeCL's on-disk kernel and autotune cache is a fresh temporary directory per run
//! (so every run starts cold) unless --kernel-cache DIR names one to keep.
//!
//! With --mnist-epochs N it trains 784-128-10 (Adam 1e-3, batch 128; `--mnist-model c`:
//! 784-800-10, SGD 0.01 with momentum 0.9, the model of case (c)) on the real MNIST data in
//! ../../data/mnist (pixels / 255, nothing else) and reports the test accuracy and samples/s of
//! each epoch.
//!
//! Rows print as `wgrad bench` prints them (`{name:<28} {figure:>10.1} {unit}  {device}`), so
//! bench/compare_torch.py's `parse_wgrad_table` reads them; the device column starts with "CPU"
//! or "GPU" as wgrad's does, which is how that script tells the two classes apart.

use burn::module::Module;
use burn::nn::loss::{
    BinaryCrossEntropyLoss, BinaryCrossEntropyLossConfig, CrossEntropyLoss, CrossEntropyLossConfig,
};
use burn::nn::{Linear, LinearConfig};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::activation::relu;
use burn::tensor::wgpu::WgpuBackend;
use burn::tensor::{Device, DeviceKind, Distribution, Int, Tensor, TensorData};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The Burn release this harness is written against (Cargo.toml pins it).
const BURN_VERSION: &str = "0.22.1";

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Cpu,
    Wgpu,
}

struct Args {
    backend: Backend,
    quick: bool,
    /// Letters of the cases to run, in the order given.
    cases: Vec<char>,
    mnist_epochs: Option<usize>,
    /// The standard-set case whose model --mnist-epochs trains: 'b' or 'c'.
    mnist_model: char,
    mnist_dir: PathBuf,
    /// CubeCL's cache directory for wgpu; `None`: a fresh one per run.
    kernel_cache: Option<PathBuf>,
}

const USAGE: &str = "usage: burn-bench --backend cpu|wgpu [--quick] [--case b,c,d,e,a] \
[--mnist-epochs N] [--mnist-model b|c] [--mnist-dir DIR] [--kernel-cache DIR]

  --backend cpu|wgpu   Burn's flex CPU backend, or its wgpu backend on Vulkan
  --quick              fewer steps, no (d), matmul at 256³ and 1024³ (as `wgrad bench --quick`)
  --case LIST          which of a,b,c,d,e to run (default: all; with --mnist-epochs: none)
  --mnist-epochs N     train 784-128-10 on MNIST for N epochs; report test accuracy and samples/s
  --mnist-model b|c    the model --mnist-epochs trains: case (b)'s 784-128-10 with Adam 1e-3
                       (default) or case (c)'s 784-800-10 with SGD 0.01, momentum 0.9
  --mnist-dir DIR      where the MNIST IDX files are (default: ../../data/mnist from this crate)
  --kernel-cache DIR   wgpu: keep CubeCL's compiled kernels and autotune results in DIR across
                       runs (default: a fresh temporary directory per run, so each run is cold)";

fn parse_args() -> Args {
    let mut backend = None;
    let mut quick = false;
    let mut cases = None;
    let mut mnist_epochs = None;
    let mut mnist_model = 'b';
    let mut mnist_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist");
    let mut kernel_cache = None;
    let mut args = std::env::args().skip(1);
    let fail = |message: String| -> ! {
        eprintln!("{message}\n\n{USAGE}");
        std::process::exit(2)
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--backend" => {
                backend = Some(match value("--backend").as_str() {
                    "cpu" | "flex" => Backend::Cpu,
                    "wgpu" | "gpu" => Backend::Wgpu,
                    other => fail(format!("unknown backend {other:?}")),
                })
            }
            "--quick" => quick = true,
            "--case" | "--cases" => {
                let list = value("--case");
                let letters: Vec<char> = list
                    .split(',')
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .map(|s| match s {
                        "a" | "b" | "c" | "d" | "e" => s.chars().next().unwrap(),
                        other => fail(format!("unknown case {other:?} (expected a, b, c, d, e)")),
                    })
                    .collect();
                cases = Some(letters);
            }
            "--mnist-epochs" => {
                let n = value("--mnist-epochs");
                mnist_epochs = Some(
                    n.parse()
                        .unwrap_or_else(|_| fail(format!("--mnist-epochs {n}: not a number"))),
                );
            }
            "--mnist-model" => {
                mnist_model = match value("--mnist-model").as_str() {
                    "b" => 'b',
                    "c" => 'c',
                    other => fail(format!("unknown --mnist-model {other:?} (expected b or c)")),
                }
            }
            "--mnist-dir" => mnist_dir = PathBuf::from(value("--mnist-dir")),
            "--kernel-cache" => kernel_cache = Some(PathBuf::from(value("--kernel-cache"))),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            other => fail(format!("unknown argument {other:?}")),
        }
    }
    let backend = backend.unwrap_or_else(|| fail("--backend is required".into()));
    let default_cases = if mnist_epochs.is_some() {
        vec![]
    } else {
        vec!['a', 'b', 'c', 'd', 'e']
    };
    Args {
        backend,
        quick,
        cases: cases.unwrap_or(default_cases),
        mnist_epochs,
        mnist_model,
        mnist_dir,
        kernel_cache,
    }
}

// ---------------------------------------------------------------------------------------------
// The model

/// Linear layers with ReLU between them; the last layer's output is the logits.
#[derive(Module, Debug)]
struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    fn new(widths: &[usize], device: &Device) -> Self {
        let layers = widths
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        Mlp { layers }
    }

    fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}

#[derive(Clone, Copy)]
enum Opt {
    Adam,
    Momentum,
}

/// Softmax cross-entropy for several outputs, sigmoid binary cross-entropy for one; both take
/// the logits.
enum Loss {
    CrossEntropy(CrossEntropyLoss),
    Binary(BinaryCrossEntropyLoss),
}

/// A model, its optimizer and its loss: one training step at a time.
struct Trainer {
    /// `None` only inside `step`, while the optimizer owns the model.
    model: Option<Mlp>,
    optimizer: ModuleOptimizer,
    lr: f64,
    loss: Loss,
}

impl Trainer {
    fn new(widths: &[usize], opt: Opt, lr: f64, device: &Device) -> Self {
        let optimizer = match opt {
            // PyTorch's and wgrad's epsilon; Burn's default is 1e-5.
            Opt::Adam => AdamConfig::new().with_epsilon(1e-8).init(),
            // PyTorch's SGD momentum has no dampening; Burn's default dampening is 0.1.
            Opt::Momentum => SgdConfig::new()
                .with_momentum(Some(
                    MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
                ))
                .init(),
        };
        let loss = if *widths.last().unwrap() == 1 {
            Loss::Binary(
                BinaryCrossEntropyLossConfig::new()
                    .with_logits(true)
                    .init(device),
            )
        } else {
            Loss::CrossEntropy(CrossEntropyLossConfig::new().init(device))
        };
        Trainer {
            model: Some(Mlp::new(widths, device)),
            optimizer,
            lr,
            loss,
        }
    }

    /// Forward, loss, backward and optimizer step on one batch. Returns the batch's mean loss
    /// and its number of correct predictions, both still on the device.
    fn step(&mut self, x: Tensor<2>, y: Tensor<1, Int>) -> (Tensor<1>, Tensor<1, Int>) {
        let model = self.model.take().expect("model");
        let [batch] = y.dims();
        let logits = model.forward(x);
        let predicted = logits.clone().detach();
        let loss = match &self.loss {
            Loss::CrossEntropy(ce) => ce.forward(logits, y.clone()),
            Loss::Binary(bce) => bce.forward(logits, y.clone().reshape([batch, 1])),
        };
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.model = Some(self.optimizer.step(self.lr, model, grads));
        (loss.detach(), correct(predicted, y))
    }

    fn model(&self) -> &Mlp {
        self.model.as_ref().expect("model")
    }
}

/// How many rows of `logits` predict their class: argmax for several outputs, `logit > 0`
/// against class 1 for one.
fn correct(logits: Tensor<2>, y: Tensor<1, Int>) -> Tensor<1, Int> {
    let [batch, outputs] = logits.dims();
    let hits = if outputs == 1 {
        logits
            .greater_elem(0.0)
            .reshape([batch])
            .equal(y.equal_elem(1))
    } else {
        logits.argmax(1).reshape([batch]).equal(y)
    };
    hits.int().sum()
}

// ---------------------------------------------------------------------------------------------
// Data and epochs

/// A small deterministic generator (splitmix64) for the epoch permutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A random permutation of 0..n (Fisher-Yates).
    fn permutation(&mut self, n: usize) -> Vec<i64> {
        let mut order: Vec<i64> = (0..n as i64).collect();
        for i in (1..n).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order
    }
}

/// A training set resident on the device.
struct Data {
    x: Tensor<2>,
    y: Tensor<1, Int>,
    rows: usize,
}

impl Data {
    fn new(features: Vec<f32>, labels: Vec<i64>, device: &Device) -> Self {
        let rows = labels.len();
        let inputs = features.len() / rows;
        Data {
            x: Tensor::from_data(TensorData::new(features, [rows, inputs]), device),
            y: Tensor::from_data(TensorData::new(labels, [rows]), device),
            rows,
        }
    }

    /// compare_torch.py's set: x[r][c] = ((r*31 + c*17) % 255) / 255, class r % max(outputs, 2).
    fn synthetic(rows: usize, inputs: usize, outputs: usize, device: &Device) -> Self {
        let mut x = Vec::with_capacity(rows * inputs);
        for r in 0..rows {
            for c in 0..inputs {
                x.push(((r * 31 + c * 17) % 255) as f32 / 255.0);
            }
        }
        let y = (0..rows).map(|r| (r % outputs.max(2)) as i64).collect();
        Data::new(x, y, device)
    }
}

struct EpochResult {
    seconds: f64,
    mean_loss: f64,
    accuracy: f64,
}

/// One epoch over `data` in a fresh random order, in batches of `batch` (the last one may be
/// short). The loss and correct count stay on the device until the end-of-epoch read-back.
fn epoch(
    trainer: &mut Trainer,
    data: &Data,
    batch: usize,
    rng: &mut Rng,
    device: &Device,
) -> EpochResult {
    device.sync().expect("device sync");
    let started = Instant::now();
    let order: Tensor<1, Int> = Tensor::from_data(
        TensorData::new(rng.permutation(data.rows), [data.rows]),
        device,
    );
    let mut loss_sum: Tensor<1> = Tensor::zeros([1], device);
    let mut correct_sum: Tensor<1, Int> = Tensor::zeros([1], device);
    let mut start = 0;
    while start < data.rows {
        let end = (start + batch).min(data.rows);
        let index = order.clone().slice([start..end]);
        let x = data.x.clone().select(0, index.clone());
        let y = data.y.clone().select(0, index);
        let (loss, correct) = trainer.step(x, y);
        loss_sum = loss_sum + loss.mul_scalar((end - start) as f64);
        correct_sum = correct_sum + correct;
        start = end;
    }
    // The end-of-epoch metrics read-back, as wgrad's `take_train_metrics`.
    let loss_total: f32 = loss_sum.into_scalar();
    let correct_total: i64 = correct_sum.into_scalar();
    EpochResult {
        seconds: started.elapsed().as_secs_f64(),
        mean_loss: loss_total as f64 / data.rows as f64,
        accuracy: correct_total as f64 / data.rows as f64,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

// ---------------------------------------------------------------------------------------------
// The standard set

struct TrainCase {
    letter: char,
    name: &'static str,
    widths: &'static [usize],
    batch: usize,
    opt: Opt,
    lr: f64,
}

const CASES: [TrainCase; 4] = [
    TrainCase {
        letter: 'b',
        name: "(b) 784-128-10 adam",
        widths: &[784, 128, 10],
        batch: 128,
        opt: Opt::Adam,
        lr: 1e-3,
    },
    TrainCase {
        letter: 'c',
        name: "(c) 784-800-10 momentum",
        widths: &[784, 800, 10],
        batch: 128,
        opt: Opt::Momentum,
        lr: 0.01,
    },
    TrainCase {
        letter: 'd',
        name: "(d) 1024-4096x3-10 adam",
        widths: &[1024, 4096, 4096, 4096, 10],
        batch: 1024,
        opt: Opt::Adam,
        lr: 1e-3,
    },
    TrainCase {
        letter: 'e',
        name: "(e) 2-16-1 adam",
        widths: &[2, 16, 1],
        batch: 4,
        opt: Opt::Adam,
        lr: 1e-3,
    },
];

/// Steps of one timed epoch, as src/bench.rs `run` and compare_torch.py `steps_for` choose them.
fn steps_for(case: &TrainCase, quick: bool) -> usize {
    match (quick, case.batch) {
        (_, 4) => 500,
        (true, _) => 20,
        (false, 1024) => 10,
        (false, _) => 100,
    }
}

struct TrainFigures {
    samples_per_second: f64,
    first_step_seconds: f64,
    steady_ms_per_step: f64,
}

/// Training samples/s of `case`: one warm-up epoch of `steps` steps, then the median of 3.
/// Before the warm-up, the very first step is timed alone (to its loss read back).
fn train_figures(case: &TrainCase, steps: usize, device: &Device) -> TrainFigures {
    let train_device = device.clone().autodiff();
    let (inputs, outputs) = (case.widths[0], *case.widths.last().unwrap());
    let rows = steps * case.batch;
    let data = Data::synthetic(rows, inputs, outputs, &train_device);
    let mut trainer = Trainer::new(case.widths, case.opt, case.lr, &train_device);
    let mut rng = Rng(0);
    device.sync().expect("device sync");

    let started = Instant::now();
    let (loss, _) = trainer.step(
        data.x.clone().slice([0..case.batch]),
        data.y.clone().slice([0..case.batch]),
    );
    let _: f32 = loss.into_scalar();
    let first_step_seconds = started.elapsed().as_secs_f64();

    epoch(&mut trainer, &data, case.batch, &mut rng, &train_device);
    let seconds = median(
        (0..3)
            .map(|_| epoch(&mut trainer, &data, case.batch, &mut rng, &train_device).seconds)
            .collect(),
    );
    TrainFigures {
        samples_per_second: rows as f64 / seconds,
        first_step_seconds,
        steady_ms_per_step: seconds / steps as f64 * 1e3,
    }
}

/// fp32 GFLOP/s of an n×n×n product: after a warm-up, the median of 5 timings of enough
/// back-to-back products to last about 0.1 s, each timing ending with a device sync.
fn matmul_gflops(n: usize, device: &Device) -> f64 {
    let a: Tensor<2> = Tensor::random([n, n], Distribution::Default, device);
    let b: Tensor<2> = Tensor::random([n, n], Distribution::Default, device);
    // The products stay alive until after the sync, so no backend can skip computing them.
    let time = |count: usize| {
        device.sync().expect("device sync");
        let started = Instant::now();
        let products: Vec<Tensor<2>> = (0..count).map(|_| a.clone().matmul(b.clone())).collect();
        device.sync().expect("device sync");
        let seconds = started.elapsed().as_secs_f64();
        drop(products);
        seconds
    };
    for _ in 0..3 {
        time(1);
    }
    let once = time(1).max(1e-6);
    // At most 256 MiB of live products.
    let inner = ((0.1 / once) as usize).clamp(1, (64 << 20) / (n * n));
    let per_product = median((0..5).map(|_| time(inner) / inner as f64).collect());
    2.0 * (n * n * n) as f64 / per_product / 1e9
}

fn run_standard_set(args: &Args, device: &Device, label: &str) {
    let sizes: [usize; 2] = if args.quick {
        [256, 1024]
    } else {
        [1024, 4096]
    };
    println!("{:<28} {:>16}  device", "benchmark", "figure");
    let mut notes = Vec::new();
    for &letter in &args.cases {
        if letter == 'a' {
            for n in sizes {
                let gflops = matmul_gflops(n, device);
                println!(
                    "{:<28} {:>10.1} GFLOP/s  {label}",
                    format!("(a) matmul {n}³"),
                    gflops
                );
            }
            continue;
        }
        let case = CASES.iter().find(|c| c.letter == letter).expect("case");
        if args.quick && case.widths.len() > 3 {
            continue;
        }
        let steps = steps_for(case, args.quick);
        let f = train_figures(case, steps, device);
        let figure = if case.batch == 4 {
            format!("{:>10.1} steps/s", f.samples_per_second / case.batch as f64)
        } else {
            format!("{:>10.1} samples/s", f.samples_per_second)
        };
        println!("{:<28} {figure}  {label}", case.name);
        notes.push(format!(
            "# {}: first step {:.3} seconds; steady {:.3} ms per step ({steps} steps per epoch)",
            case.name, f.first_step_seconds, f.steady_ms_per_step
        ));
    }
    for note in notes {
        println!("{note}");
    }
}

// ---------------------------------------------------------------------------------------------
// MNIST

/// An IDX file of unsigned bytes, gzipped: its dimensions and its bytes.
fn read_idx_gz(path: &Path, expected_magic: u32) -> (Vec<usize>, Vec<u8>) {
    let file =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut bytes = Vec::new();
    GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("cannot decompress {}: {e}", path.display()));
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    let magic = word(0);
    assert_eq!(
        magic,
        expected_magic,
        "{}: IDX magic {magic:#010x}",
        path.display()
    );
    let dims: Vec<usize> = (1..=(magic & 0xff) as usize)
        .map(|i| word(i) as usize)
        .collect();
    let start = 4 * (dims.len() + 1);
    let len: usize = dims.iter().product();
    assert_eq!(
        bytes.len(),
        start + len,
        "{}: size differs from its header",
        path.display()
    );
    (dims, bytes[start..].to_vec())
}

/// Images (pixels / 255, one row each) and labels of one MNIST split.
fn read_mnist(dir: &Path, split: &str) -> (Vec<f32>, Vec<i64>) {
    let (_, pixels) = read_idx_gz(&dir.join(format!("{split}-images-idx3-ubyte.gz")), 0x0803);
    let (_, labels) = read_idx_gz(&dir.join(format!("{split}-labels-idx1-ubyte.gz")), 0x0801);
    (
        pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels.iter().map(|&l| l as i64).collect(),
    )
}

/// Trains case `model`'s network ('b' or 'c') on MNIST for `epochs` epochs, printing the test
/// accuracy and samples/s after each.
fn run_mnist(epochs: usize, model: char, dir: &Path, device: &Device, label: &str) {
    let (widths, opt, lr, name): (&[usize], Opt, f64, &str) = match model {
        'c' => (
            &[784, 800, 10],
            Opt::Momentum,
            0.01,
            "784-800-10, SGD 0.01 momentum 0.9",
        ),
        _ => (&[784, 128, 10], Opt::Adam, 1e-3, "784-128-10, Adam 1e-3"),
    };
    let train_device = device.clone().autodiff();
    let (train_x, train_y) = read_mnist(dir, "train");
    let (test_x, test_y) = read_mnist(dir, "t10k");
    let train = Data::new(train_x, train_y, &train_device);
    let test = Data::new(test_x, test_y, device);
    let mut trainer = Trainer::new(widths, opt, lr, &train_device);
    let mut rng = Rng(0);
    println!(
        "MNIST {name}, batch 128, {} training and {} test images, {label}",
        train.rows, test.rows
    );
    for e in 1..=epochs {
        let r = epoch(&mut trainer, &train, 128, &mut rng, &train_device);
        // The test accuracy, in batches of 1000, on a copy of the model without autodiff.
        let model = trainer.model().valid();
        let mut hits = 0i64;
        for start in (0..test.rows).step_by(1000) {
            let end = (start + 1000).min(test.rows);
            let x = test.x.clone().slice([start..end]);
            let y = test.y.clone().slice([start..end]);
            hits += correct(model.forward(x), y).into_scalar::<i64>();
        }
        println!(
            "epoch {e}: train loss {:.4}, train accuracy {:.4}, test accuracy {:.4}, {:.1} samples/s ({:.2} s)",
            r.mean_loss,
            r.accuracy,
            hits as f64 / test.rows as f64,
            train.rows as f64 / r.seconds,
            r.seconds
        );
    }
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let args = parse_args();
    let (device, label) = match args.backend {
        Backend::Cpu => (Device::flex(), format!("CPU: burn-flex {BURN_VERSION}")),
        Backend::Wgpu => {
            let cache = use_kernel_cache(args.kernel_cache.clone());
            println!("# CubeCL kernel and autotune cache: {}", cache.display());
            // Pinned to Vulkan; the adapter is wgpu's default choice there, which
            // CUBECL_WGPU_DEFAULT_DEVICE (e.g. `Cpu`) overrides. Kernels are WGSL, or SPIR-V
            // when built with the `spirv` feature.
            let started = Instant::now();
            let device = Device::wgpu_options()
                .device_kind(DeviceKind::DefaultDevice)
                .graphics_api(WgpuBackend::Vulkan)
                .init()
                .unwrap_or_else(|e| panic!("cannot open a wgpu device on Vulkan: {e}"));
            let one: Tensor<1> = Tensor::ones([1], &device);
            let _: f32 = one.into_scalar();
            let open_seconds = started.elapsed().as_secs_f64();
            let adapter = device
                .identity()
                .map(|id| id.name)
                .unwrap_or_else(|| "unknown adapter".into());
            println!("# wgpu device opened in {open_seconds:.3} seconds");
            let kernels = if cfg!(feature = "spirv") {
                "SPIR-V"
            } else {
                "WGSL"
            };
            (
                device,
                format!("GPU: burn-wgpu {BURN_VERSION} {adapter} on Vulkan ({kernels})"),
            )
        }
    };
    if !args.cases.is_empty() {
        run_standard_set(&args, &device, &label);
    }
    if let Some(epochs) = args.mnist_epochs {
        run_mnist(epochs, args.mnist_model, &args.mnist_dir, &device, &label);
    }
    if args.backend == Backend::Wgpu && args.kernel_cache.is_none() {
        let _ = std::fs::remove_dir_all(kernel_cache_dir(None));
    }
}

/// Where CubeCL keeps compiled kernels and autotune results between runs: `dir`, or by
/// default a fresh directory of this process under the system's temporary directory (removed
/// at the end), so that every run starts cold and the first-step time includes everything.
fn kernel_cache_dir(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("burn-bench-cubecl-{}", std::process::id()))
    })
}

/// Points CubeCL's cache at [`kernel_cache_dir`]. Left alone, CubeCL would put it under the
/// `target/` beside the outermost Cargo.toml above the working directory: wgrad's own.
fn use_kernel_cache(dir: Option<PathBuf>) -> PathBuf {
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig, cache::CacheConfig};
    let dir = kernel_cache_dir(dir);
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    config.environment.path = CacheConfig::Directory(dir.clone());
    CubeClRuntimeConfig::set(config);
    dir
}
