//! The `wgrad` command line. With no arguments it runs the main job: a 3-class spiral
//! (built in, nothing to download) trained on the best device found, then its test accuracy
//! and the time it took.

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;
use std::time::Instant;
use wgrad::{
    Activation, AdapterChoice, Device, FitConfig, Model, Optimizer, Sequential, Targets, data,
};

#[derive(Parser)]
#[command(
    name = "wgrad",
    version,
    about = "Train multilayer perceptrons on the GPU (wgpu) or the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand)]
enum Command {
    /// List every GPU adapter wgpu finds, best first.
    Devices,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Auto,
    Gpu,
    Cpu,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Where to train.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// GPU backend (vulkan, metal, dx12, gl); also WGRAD_BACKEND.
    #[arg(long)]
    backend: Option<String>,
    /// Part of the GPU adapter's name, or "software"; also WGRAD_ADAPTER.
    #[arg(long)]
    adapter: Option<String>,
    #[arg(long, default_value_t = 60)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn device(args: &TrainArgs) -> Result<Device, String> {
    let mut choice = AdapterChoice::default();
    if let Some(api) = &args.backend {
        choice.api = Some(api.parse()?);
    }
    match args.adapter.as_deref() {
        Some(a) if a.eq_ignore_ascii_case("software") => choice.software = true,
        Some(a) => choice.name = Some(a.to_string()),
        None => {}
    }
    Ok(match args.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Gpu => Device::Gpu(choice),
        DeviceArg::Auto if choice != AdapterChoice::default() => Device::Gpu(choice),
        DeviceArg::Auto => Device::Auto,
    })
}

fn list_devices() {
    for adapter in wgrad::gpu::list_adapters() {
        let info = adapter.get_info();
        let limits = adapter.limits();
        println!(
            "{} | {:?} | {:?} | driver {} {} | max buffer {} MiB, max storage binding {} MiB",
            info.name,
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info,
            limits.max_buffer_size >> 20,
            limits.max_storage_buffer_binding_size >> 20,
        );
    }
}

/// The main job: a 3-class spiral, 2-64-64-3 ReLU/softmax, Adam; test accuracy on held-out points.
fn main_job(args: &TrainArgs) -> Result<(), String> {
    let (x_train, y_train) = data::spirals(300, 3, 0.2, args.seed);
    let (x_test, y_test) = data::spirals(100, 3, 0.2, args.seed + 1);
    let spec = Sequential::new(2)
        .dense(64, Activation::Relu)
        .dense(64, Activation::Relu)
        .dense(3, Activation::Softmax)
        .optimizer(Optimizer::adam(0.01))
        .seed(args.seed);
    let started = Instant::now();
    let mut model = Model::new(spec, device(args)?).map_err(|e| e.to_string())?;
    println!(
        "training a 2-64-64-3 MLP on 900 spiral points, {}",
        model.device()
    );
    let config = FitConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        seed: args.seed,
        verbose: true,
        ..Default::default()
    };
    let history = model
        .fit(&x_train, &Targets::from(y_train), &config)
        .map_err(|e| e.to_string())?;
    let test = model
        .evaluate(&x_test, &Targets::from(y_test))
        .map_err(|e| e.to_string())?;
    let last = history.last().expect("at least one epoch");
    println!(
        "train loss {:.4}, test loss {:.4}, test accuracy {:.1}%, {:.2} s in all",
        last.loss,
        test.loss,
        100.0 * test.accuracy.unwrap_or(0.0),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Devices) => {
            list_devices();
            Ok(())
        }
        None => main_job(&cli.train),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wgrad: {e}");
            ExitCode::FAILURE
        }
    }
}
