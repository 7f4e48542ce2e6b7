//! What `fit` offers beyond the plain loop: validation, learning-rate schedules, gradient
//! clipping, early stopping with best-weight restore, callbacks and exact resumption.

mod common;

use wgrad::train::{Callback, EarlyStopping, EarlyStoppingResume, Monitor, Schedule};
use wgrad::{
    Activation, Device, Divergence, FitConfig, History, Model, Optimizer, Result, Sequential,
    Targets, WgradError, data,
};

fn spiral_model(seed: u64) -> Model {
    let spec = Sequential::new(2)
        .dense(32, Activation::Relu)
        .dense(3, Activation::Softmax)
        .optimizer(Optimizer::adam(0.01))
        .seed(seed);
    Model::new(spec, Device::Cpu).unwrap()
}

#[test]
fn validation_metrics_each_epoch() {
    let (x, y) = data::spirals(100, 3, 0.2, 0);
    let (vx, vy) = data::spirals(30, 3, 0.2, 1);
    let mut model = spiral_model(0);
    let config = FitConfig {
        epochs: 3,
        batch_size: 16,
        ..Default::default()
    };
    let history = model
        .fit_with(
            &x,
            &Targets::from(y),
            &config,
            Some((&vx, &Targets::from(vy.clone()))),
            &mut [],
        )
        .unwrap();
    assert_eq!(history.epochs.len(), 3);
    // Keras's history.history["loss"], ["val_loss"], ["accuracy"], ["val_accuracy"].
    let column = |pick: fn(&wgrad::EpochRecord) -> Option<f32>| -> Vec<f32> {
        history.epochs.iter().map(|e| pick(e).unwrap()).collect()
    };
    assert_eq!(history.losses(), column(|e| Some(e.loss)));
    assert_eq!(history.val_losses(), column(|e| e.val_loss));
    assert_eq!(history.accuracies(), column(|e| e.accuracy));
    assert_eq!(history.val_accuracies(), column(|e| e.val_accuracy));
    let last = history.last().unwrap();
    let evaluation = model.evaluate(&vx, &Targets::from(vy)).unwrap();
    assert_eq!(
        last.val_loss,
        Some(evaluation.loss),
        "the last epoch's validation loss is the model's"
    );
    assert_eq!(last.val_accuracy, evaluation.accuracy);
}

/// Evaluates a test set after every epoch, as a Keras user's callback would.
struct TestSetEvaluation<'a> {
    x: &'a ndarray::Array2<f32>,
    y: &'a Targets,
    losses: Vec<f32>,
}

impl Callback for TestSetEvaluation<'_> {
    fn on_epoch_end(&mut self, model: &mut Model, _history: &History) -> Result<()> {
        self.losses.push(model.evaluate(self.x, self.y)?.loss);
        Ok(())
    }
}

/// The validation set stays what `fit_with` was given when a callback evaluates another set:
/// the validation losses are those of a run without the callback, bit for bit.
fn validation_survives_evaluate_in_a_callback(device: Device) {
    let (x, y) = data::spirals(50, 3, 0.2, 0);
    let (vx, vy) = data::spirals(20, 3, 0.2, 1);
    let (tx, ty) = data::spirals(30, 3, 0.5, 2);
    let (y, vy, ty) = (Targets::from(y), Targets::from(vy), Targets::from(ty));
    let spec = Sequential::new(2)
        .dense(32, Activation::Relu)
        .dense(3, Activation::Softmax)
        .optimizer(Optimizer::adam(0.01))
        .seed(4);
    let config = FitConfig {
        epochs: 4,
        batch_size: 16,
        ..Default::default()
    };
    let val_losses = |history: &History| -> Vec<f32> {
        history.epochs.iter().map(|e| e.val_loss.unwrap()).collect()
    };
    let plain = Model::new(spec.clone(), device.clone())
        .unwrap()
        .fit_with(&x, &y, &config, Some((&vx, &vy)), &mut [])
        .unwrap();
    let mut test_set = TestSetEvaluation {
        x: &tx,
        y: &ty,
        losses: Vec::new(),
    };
    let with_callback = Model::new(spec, device)
        .unwrap()
        .fit_with(&x, &y, &config, Some((&vx, &vy)), &mut [&mut test_set])
        .unwrap();
    assert_eq!(val_losses(&with_callback), val_losses(&plain));
    assert_ne!(
        test_set.losses[1..],
        val_losses(&plain)[1..],
        "the test set must differ from the validation set for this test to mean anything"
    );
}

#[test]
fn cpu_validation_survives_evaluate_in_a_callback() {
    validation_survives_evaluate_in_a_callback(Device::Cpu);
}

#[test]
fn gpu_validation_survives_evaluate_in_a_callback() {
    if let Some(gpu) = common::gpu_device("gpu_validation_survives_evaluate_in_a_callback") {
        validation_survives_evaluate_in_a_callback(gpu);
    }
}

#[test]
fn schedules_give_the_documented_rates() {
    let base = 0.1;
    let rates = |s: Schedule| (0..5).map(|e| s.learning_rate(base, e)).collect::<Vec<_>>();
    assert_eq!(rates(Schedule::Constant), vec![0.1; 5]);
    let step = rates(Schedule::Step {
        every: 2,
        factor: 0.5,
    });
    assert_eq!(step, vec![0.1, 0.1, 0.05, 0.05, 0.025]);
    let exponential = rates(Schedule::Exponential { rate: 0.9 });
    assert!((exponential[3] - 0.1 * 0.9f32.powi(3)).abs() < 1e-7);
    let cosine = rates(Schedule::Cosine {
        epochs: 4,
        min_lr: 0.01,
    });
    assert!(
        (cosine[0] - 0.1).abs() < 1e-7
            && (cosine[2] - 0.055).abs() < 1e-6
            && (cosine[4] - 0.01).abs() < 1e-7
    );
    // The history records the rate each epoch trained with.
    let (x, y) = data::spirals(50, 3, 0.2, 0);
    let mut model = spiral_model(1);
    let config = FitConfig {
        epochs: 4,
        schedule: Schedule::Step {
            every: 2,
            factor: 0.5,
        },
        ..Default::default()
    };
    let history = model.fit(&x, &Targets::from(y), &config).unwrap();
    let recorded: Vec<f32> = history.epochs.iter().map(|e| e.learning_rate).collect();
    assert_eq!(recorded, vec![0.01, 0.01, 0.005, 0.005]);
}

#[test]
fn clipping_bounds_the_update() {
    // With plain SGD, one step moves the weights by lr·g; clipped, by at most lr·clip_norm.
    let (x, y) = data::spirals(40, 3, 0.2, 2);
    let spec = Sequential::new(2)
        .dense(16, Activation::Tanh)
        .dense(3, Activation::Softmax)
        .optimizer(Optimizer::sgd(1.0))
        .seed(4);
    let mut model = Model::new(spec.clone(), Device::Cpu).unwrap();
    let before = model.params().unwrap();
    let config = FitConfig {
        epochs: 1,
        batch_size: 120,
        clip_norm: Some(0.01),
        ..Default::default()
    };
    model.fit(&x, &Targets::from(y), &config).unwrap();
    let after = model.params().unwrap();
    let moved: f32 = before
        .iter()
        .zip(&after)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f32>()
        .sqrt();
    assert!(
        moved > 0.0 && moved <= 0.01 * 1.0001,
        "one clipped SGD step moved the weights by {moved}"
    );
}

#[test]
fn early_stopping_stops_and_restores_the_best_weights() {
    // A learning rate far too high makes the validation loss worsen after a while.
    let (x, y) = data::spirals(60, 3, 0.3, 0);
    let (vx, vy) = data::spirals(30, 3, 0.3, 1);
    let (y, vy) = (Targets::from(y), Targets::from(vy));
    let spec = Sequential::new(2)
        .dense(64, Activation::Relu)
        .dense(3, Activation::Softmax)
        .optimizer(Optimizer::sgd(3.0))
        .seed(0);
    let mut model = Model::new(spec, Device::Cpu).unwrap();
    let rule = EarlyStopping {
        monitor: Monitor::ValLoss,
        patience: 3,
        min_delta: 0.0,
        restore_best: true,
    };
    let config = FitConfig {
        epochs: 200,
        batch_size: 8,
        early_stopping: Some(rule),
        ..Default::default()
    };
    let history = model
        .fit_with(&x, &y, &config, Some((&vx, &vy)), &mut [])
        .unwrap();
    let epochs = history.epochs.len();
    assert!(epochs < 200, "never stopped");
    let losses: Vec<f32> = history.epochs.iter().map(|e| e.val_loss.unwrap()).collect();
    let best = losses.iter().copied().fold(f32::INFINITY, f32::min);
    let best_epoch = losses.iter().position(|&l| l == best).unwrap();
    assert_eq!(
        epochs,
        best_epoch + 1 + 3,
        "stopped {epochs} epochs in; best was epoch {}",
        best_epoch + 1
    );
    let restored = model.evaluate(&vx, &vy).unwrap().loss;
    assert!(
        (restored - best).abs() <= 1e-6 * best.max(1.0),
        "restored weights give {restored}, best epoch had {best}"
    );
}

struct Counter {
    steps: usize,
    rows: usize,
    epochs: Vec<usize>,
}

impl Callback for Counter {
    fn on_step(&mut self, rows: usize) {
        self.steps += 1;
        self.rows += rows;
    }
    fn on_epoch_end(&mut self, model: &mut Model, history: &History) -> Result<()> {
        self.epochs.push(history.last().unwrap().epoch);
        assert_eq!(model.steps() as usize, self.steps);
        Ok(())
    }
}

#[test]
fn callbacks_see_every_step_and_epoch() {
    let (x, y) = data::spirals(35, 3, 0.2, 0);
    let mut model = spiral_model(0);
    let mut counter = Counter {
        steps: 0,
        rows: 0,
        epochs: vec![],
    };
    let config = FitConfig {
        epochs: 3,
        batch_size: 10,
        ..Default::default()
    };
    model
        .fit_with(&x, &Targets::from(y), &config, None, &mut [&mut counter])
        .unwrap();
    assert_eq!(
        counter.steps,
        3 * 11,
        "105 rows in batches of 10 is 11 steps an epoch"
    );
    assert_eq!(counter.rows, 3 * 105);
    assert_eq!(counter.epochs, vec![1, 2, 3]);
}

#[test]
fn resuming_matches_an_uninterrupted_run() {
    let (x, y) = data::spirals(40, 3, 0.2, 5);
    let y = Targets::from(y);
    let config = FitConfig {
        epochs: 4,
        batch_size: 16,
        seed: 9,
        ..Default::default()
    };
    let mut straight = spiral_model(3);
    straight.fit(&x, &y, &config).unwrap();

    let mut first = spiral_model(3);
    first
        .fit(
            &x,
            &y,
            &FitConfig {
                epochs: 2,
                ..config.clone()
            },
        )
        .unwrap();
    let (params, state, steps) = (
        first.params().unwrap(),
        first.optimizer_state().unwrap(),
        first.steps(),
    );
    let mut resumed = spiral_model(77);
    resumed.set_params(&params).unwrap();
    resumed.set_optimizer_state(&state).unwrap();
    resumed.set_steps(steps);
    let history = resumed
        .fit(
            &x,
            &y,
            &FitConfig {
                initial_epoch: 2,
                ..config
            },
        )
        .unwrap();
    assert_eq!(
        history.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(
        resumed.params().unwrap(),
        straight.params().unwrap(),
        "resumed training diverged from the straight run"
    );
}

/// Keeps each epoch's parameters and optimizer state, as checkpoints would.
#[derive(Default)]
struct Snapshots {
    params: Vec<Vec<f32>>,
    state: Vec<[Vec<f32>; 2]>,
    steps: Vec<u64>,
}

impl Callback for Snapshots {
    fn on_epoch_end(&mut self, model: &mut Model, _: &History) -> Result<()> {
        self.params.push(model.params()?);
        self.state.push(model.optimizer_state()?);
        self.steps.push(model.steps());
        Ok(())
    }
}

/// A run with early stopping interrupted after an epoch and resumed from that epoch's state,
/// with the watch's record (`early_stopping_resume`), stops where the uninterrupted run
/// stops and keeps the same best weights.
#[test]
fn resuming_early_stopping_matches_an_uninterrupted_run() {
    let (x, y) = data::spirals(60, 3, 0.3, 0);
    let (vx, vy) = data::spirals(30, 3, 0.3, 1);
    let (y, vy) = (Targets::from(y), Targets::from(vy));
    let model = || {
        let spec = Sequential::new(2)
            .dense(64, Activation::Relu)
            .dense(3, Activation::Softmax)
            .optimizer(Optimizer::momentum(1.0, 0.9))
            .seed(0);
        Model::new(spec, Device::Cpu).unwrap()
    };
    let config = FitConfig {
        epochs: 200,
        batch_size: 8,
        early_stopping: Some(EarlyStopping::new(Monitor::ValLoss, 4)),
        ..Default::default()
    };
    let mut straight = model();
    let mut snapshots = Snapshots::default();
    let whole = straight
        .fit_with(&x, &y, &config, Some((&vx, &vy)), &mut [&mut snapshots])
        .unwrap();
    let stopped = whole.epochs.len();
    let rule = config.early_stopping.unwrap();
    let (best, _) = rule.replay(&whole);
    let best = best.unwrap().0;
    assert!(
        stopped < 200 && best < stopped,
        "stopped at {stopped}, best {best}"
    );

    // Interrupted after an epoch past the best, with the best's weights kept aside.
    let interrupted = best + 1;
    let mut resumed = model();
    resumed
        .set_params(&snapshots.params[interrupted - 1])
        .unwrap();
    resumed
        .set_optimizer_state(&snapshots.state[interrupted - 1])
        .unwrap();
    resumed.set_steps(snapshots.steps[interrupted - 1]);
    let earlier = History {
        epochs: whole.epochs[..interrupted].to_vec(),
    };
    let rest = resumed
        .fit_with(
            &x,
            &y,
            &FitConfig {
                initial_epoch: interrupted,
                early_stopping_resume: Some(EarlyStoppingResume {
                    history: earlier,
                    best_params: snapshots.params[best - 1].clone(),
                }),
                ..config.clone()
            },
            Some((&vx, &vy)),
            &mut [],
        )
        .unwrap();
    assert_eq!(rest.last().unwrap().epoch, stopped);
    assert_eq!(resumed.params().unwrap(), straight.params().unwrap());
    assert_eq!(straight.params().unwrap(), snapshots.params[best - 1]);
}

#[test]
fn divergence_is_an_error_naming_the_epoch_and_step() {
    let (x, _) = data::spirals(20, 3, 0.2, 0);
    let y = Targets::Values(x.mapv(|v| v * 1e30));
    let spec = Sequential::new(2)
        .dense(8, Activation::Relu)
        .dense(2, Activation::Linear)
        .optimizer(Optimizer::sgd(10.0))
        .seed(0);
    let mut model = Model::new(spec, Device::Cpu).unwrap();
    let error = model
        .fit(
            &x,
            &y,
            &FitConfig {
                epochs: 50,
                ..Default::default()
            },
        )
        .unwrap_err();
    // Targets of 1e30 make the very first step's squared error overflow.
    assert!(
        matches!(
            error,
            WgradError::Diverged {
                epoch: 1,
                step: 1,
                epoch_step: 1,
                cause: Divergence::Loss(loss),
                ..
            } if loss == f32::INFINITY
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("epoch 1, step 1 (step 1 of the epoch): loss is inf"),
        "{error}"
    );
}

/// `validation_split` holds out the samples `Dataset::split` would, with the fit's seed: the
/// run matches `fit_with` on the split, bit for bit, and early stopping can watch it.
fn validation_split_matches_dataset_split(device: Device) {
    let x = common::random_matrix(50, 2, 1.5, 40);
    let labels: Vec<usize> = x
        .rows()
        .into_iter()
        .map(|r| usize::from(r[0] * r[1] > 0.0) + usize::from(r[0] > 0.8))
        .collect();
    let dataset = data::Dataset {
        x: x.clone(),
        y: Targets::from(labels.clone()),
        features: wgrad::data::features::numeric_columns(["a", "b"]),
        class_names: None,
        target_names: Vec::new(),
        target_offsets: Vec::new(),
    };
    let config = FitConfig {
        epochs: 4,
        batch_size: 8,
        seed: 11,
        validation_split: Some(0.3),
        early_stopping: Some(EarlyStopping::new(Monitor::ValLoss, 10)),
        ..Default::default()
    };
    let spec = Sequential::new(2)
        .dense(16, Activation::Tanh)
        .dense(3, Activation::Softmax)
        .optimizer(Optimizer::adam(0.02))
        .seed(6);
    let mut held_out = Model::new(spec.clone(), device.clone()).unwrap();
    let history = held_out.fit(&x, &Targets::from(labels), &config).unwrap();

    let (train, validation) = dataset.split(0.3, config.seed).unwrap();
    assert_eq!((train.len(), validation.len()), (35, 15));
    let mut given = Model::new(spec, device).unwrap();
    let explicit = FitConfig {
        validation_split: None,
        ..config.clone()
    };
    let expected = given
        .fit_with(
            &train.x,
            &train.y,
            &explicit,
            Some((&validation.x, &validation.y)),
            &mut [],
        )
        .unwrap();
    let without_timing = |h: &History| -> Vec<_> {
        h.epochs
            .iter()
            .map(|e| (e.loss, e.accuracy, e.val_loss, e.val_accuracy))
            .collect()
    };
    assert_eq!(without_timing(&history), without_timing(&expected));
    assert!(history.epochs.iter().all(|e| e.val_accuracy.is_some()));
    assert_eq!(held_out.params().unwrap(), given.params().unwrap());
}

#[test]
fn cpu_validation_split_matches_dataset_split() {
    validation_split_matches_dataset_split(Device::Cpu);
}

#[test]
fn gpu_validation_split_matches_dataset_split() {
    if let Some(gpu) = common::gpu_device("gpu_validation_split_matches_dataset_split") {
        validation_split_matches_dataset_split(gpu);
    }
}

#[test]
fn validation_split_errors_are_settings() {
    let x = common::random_matrix(10, 2, 1.0, 41);
    let y = Targets::from(vec![0, 1, 2, 0, 1, 2, 0, 1, 2, 1]);
    let split = |fraction| FitConfig {
        epochs: 1,
        validation_split: Some(fraction),
        ..Default::default()
    };
    let mut model = spiral_model(0);
    let before = model.params().unwrap();
    let setting_error = |result: Result<History>, parts: &[&str]| {
        let error = result.expect_err("refused");
        assert!(matches!(error, WgradError::InvalidConfig(_)), "{error}");
        for part in parts {
            assert!(error.to_string().contains(part), "{error} lacks {part:?}");
        }
    };
    setting_error(
        model.fit_with(&x, &y, &split(0.2), Some((&x, &y)), &mut []),
        &["validation_split", "give one or the other"],
    );
    setting_error(
        model.fit(&x, &y, &split(1.5)),
        &["validation_split fraction 1.5", "(0, 1)"],
    );
    setting_error(
        model.fit(&x, &y, &split(0.01)),
        &[
            "validation_split fraction 0.01 of 10 samples",
            "0 for validation",
        ],
    );
    assert_eq!(model.params().unwrap(), before, "nothing trained");

    // Data errors name rows of the x given, not of a part of it.
    let mut with_nan = x.clone();
    with_nan[[7, 1]] = f32::NAN;
    let error = model.fit(&with_nan, &y, &split(0.5)).unwrap_err();
    assert!(
        matches!(error, WgradError::NonFinite { row: 7, col: 1, .. }),
        "{error}"
    );
}

/// What a callback does to the fit it runs in, from `on_epoch_end` of a chosen epoch.
enum Act {
    HalveTheRate,
    Panic,
    Stop,
    FitAgain,
    Replace,
}

struct Acting {
    at_epoch: usize,
    act: Act,
    x: ndarray::Array2<f32>,
    y: Targets,
}

impl Callback for Acting {
    fn on_epoch_end(&mut self, model: &mut Model, history: &History) -> Result<()> {
        if history.last().unwrap().epoch != self.at_epoch {
            return Ok(());
        }
        match self.act {
            Act::HalveTheRate => {
                model.set_learning_rate(model.spec().optimizer.learning_rate() / 2.0)
            }
            Act::Panic => panic!("a callback's bug"),
            Act::Stop => {
                model.stop_training();
                Ok(())
            }
            Act::FitAgain => model
                .fit(&self.x, &self.y, &FitConfig::default())
                .map(|_| ()),
            Act::Replace => {
                *model = spiral_model(9);
                Ok(())
            }
        }
    }
}

#[test]
fn callbacks_set_the_rate_stop_training_and_cannot_fit_or_swap_the_model() {
    let (x, y) = data::spirals(40, 3, 0.2, 3);
    let y = Targets::from(y);
    let config = FitConfig {
        epochs: 5,
        batch_size: 16,
        ..Default::default()
    };
    let run = |act: Act| {
        let mut acting = Acting {
            at_epoch: 2,
            act,
            x: x.clone(),
            y: y.clone(),
        };
        let mut model = spiral_model(1);
        let history = model.fit_with(&x, &y, &config, None, &mut [&mut acting]);
        (model, history)
    };

    // A rate set by a callback is the rate of the epochs after it (ReduceLROnPlateau).
    let (_, history) = run(Act::HalveTheRate);
    let rates: Vec<f32> = history
        .unwrap()
        .epochs
        .iter()
        .map(|e| e.learning_rate)
        .collect();
    assert_eq!(rates, [0.01, 0.01, 0.005, 0.005, 0.005]);

    // stop_training ends the fit after that epoch with its history, as Keras's
    // `model.stop_training = True`; the next fit trains again.
    let (mut model, history) = run(Act::Stop);
    assert_eq!(history.unwrap().epochs.len(), 2);
    assert_eq!(model.fit(&x, &y, &config).unwrap().epochs.len(), 5);

    let (_, history) = run(Act::FitAgain);
    let error = history.unwrap_err().to_string();
    assert!(error.contains("fit was called from a callback"), "{error}");
    let (_, history) = run(Act::Replace);
    let error = history.unwrap_err().to_string();
    assert!(error.contains("a callback replaced the model"), "{error}");

    // A fit that a callback's panic ended does not leave the model marked as fitting.
    let mut model = spiral_model(1);
    let mut panicking = Acting {
        at_epoch: 2,
        act: Act::Panic,
        x: x.clone(),
        y: y.clone(),
    };
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        model.fit_with(&x, &y, &config, None, &mut [&mut panicking])
    }));
    assert!(caught.is_err());
    assert_eq!(model.fit(&x, &y, &config).unwrap().epochs.len(), 5);

    // A rate set below a cosine schedule's floor is refused as at the start of fit (the rate
    // would climb back to the floor).
    let cosine = FitConfig {
        schedule: Schedule::Cosine {
            epochs: 5,
            min_lr: 0.006,
        },
        ..config.clone()
    };
    let mut halving = Acting {
        at_epoch: 2,
        act: Act::HalveTheRate,
        x: x.clone(),
        y: y.clone(),
    };
    let error = spiral_model(1)
        .fit_with(&x, &y, &cosine, None, &mut [&mut halving])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("min_lr 0.006 is above the base learning rate 0.005"),
        "{error}"
    );
}
