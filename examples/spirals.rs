//! Multi-class classification: three interleaved spiral arms, which no straight line (and no
//! single hidden layer of a few units) separates. A 2-64-64-3 network (ReLU, softmax output,
//! categorical cross-entropy, Adam 0.01) learns them on 900 points and is scored on 300
//! held-out points drawn with another seed. It runs on the best device found (`Device::Auto`:
//! a hardware GPU adapter, else the CPU backend).
//!
//! ```text
//! cargo run --release --example spirals
//! ```

use std::process::ExitCode;
use std::time::Instant;
use wgrad::{Activation, Device, FitConfig, Loss, Model, Optimizer, Sequential, Targets, data};

fn run() -> wgrad::Result<()> {
    let (x_train, y_train) = data::spirals(300, 3, 0.2, 0);
    let (x_test, y_test) = data::spirals(100, 3, 0.2, 1);
    let spec = Sequential::new(2)
        .dense(64, Activation::Relu)
        .dense(64, Activation::Relu)
        .dense(3, Activation::Softmax)
        .loss(Loss::CategoricalCrossEntropy)
        .optimizer(Optimizer::adam(0.01));
    let started = Instant::now();
    let mut model = Model::new(spec, Device::Auto)?;
    println!(
        "spirals: 2-64-64-3 on {} training points, {}",
        x_train.nrows(),
        model.device()
    );
    let config = FitConfig {
        epochs: 60,
        batch_size: 32,
        verbose: true,
        ..Default::default()
    };
    let history = model.fit(&x_train, &Targets::from(y_train), &config)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let test = model.evaluate(&x_test, &Targets::from(y_test))?;
    let last = history.last().expect("at least one epoch");
    println!("train loss {:.4}", last.loss);
    println!(
        "test loss {:.4}, test accuracy {:.1}% on {} held-out points",
        test.loss,
        100.0 * test.accuracy.expect("class targets have an accuracy"),
        x_test.nrows()
    );
    println!(
        "time: {:.2} s in all ({:.2} s to set up and train)",
        started.elapsed().as_secs_f64(),
        train_seconds
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spirals: {e}");
            ExitCode::FAILURE
        }
    }
}
