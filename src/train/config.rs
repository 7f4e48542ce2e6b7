//! How `fit` trains: epochs, batches, shuffling, learning-rate schedules, gradient clipping
//! and early stopping, with the defaults Keras users expect.

use crate::error::WgradError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    /// Train until this epoch (counting from 1; see `initial_epoch`).
    pub epochs: usize,
    pub batch_size: usize,
    /// Reshuffle the samples every epoch (each epoch's order comes from `seed` and the epoch
    /// number, so a resumed run sees the same order as an uninterrupted one).
    pub shuffle: bool,
    /// Seed of the shuffling and of the dropout masks.
    pub seed: u64,
    /// Print one line per epoch to stderr.
    pub verbose: bool,
    /// Epochs already done, when resuming: training runs `initial_epoch + 1 ..= epochs`.
    pub initial_epoch: usize,
    pub schedule: Schedule,
    /// Rescale the gradient when its global L2 norm exceeds this (PyTorch's
    /// `clip_grad_norm_`, applied before the L1/L2 penalties).
    pub clip_norm: Option<f32>,
    pub early_stopping: Option<EarlyStopping>,
    /// Hold out this fraction of the samples as validation data (Keras's `validation_split`),
    /// chosen as [`crate::data::Dataset::split`] chooses them: shuffled from `seed`, the count
    /// rounded, each part at least one sample. Unlike Keras, not simply the last samples, so
    /// that data sorted by class still validates on every class. `fit_with` refuses it beside
    /// explicit validation data.
    pub validation_split: Option<f32>,
    /// Where early stopping stood in the epochs before `initial_epoch`, when resuming a run
    /// that had it: without this a resumed run would watch from scratch and keep other
    /// weights than the uninterrupted run.
    #[serde(skip)]
    pub early_stopping_resume: Option<EarlyStoppingResume>,
}

/// What early stopping needs to go on where a checkpointed run left off: the epochs so far
/// (their monitored values say which was best and how long ago) and the weights of the best.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStoppingResume {
    pub history: super::History,
    pub best_params: Vec<f32>,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            epochs: 10,
            batch_size: 32,
            shuffle: true,
            seed: 0,
            verbose: false,
            initial_epoch: 0,
            schedule: Schedule::Constant,
            clip_norm: None,
            early_stopping: None,
            validation_split: None,
            early_stopping_resume: None,
        }
    }
}

impl FitConfig {
    /// Checks the settings that do not depend on the data, for an optimizer whose learning
    /// rate is `base_rate`: a batch size of at least 1, the schedule's numbers (and a cosine
    /// schedule that anneals down, not up), a finite positive clip norm, and early-stopping
    /// numbers that can stop a run as intended.
    pub(crate) fn check(&self, base_rate: f32) -> crate::Result<()> {
        if self.batch_size == 0 {
            return Err(WgradError::ZeroBatchSize);
        }
        self.schedule.check().map_err(WgradError::InvalidConfig)?;
        if let Some(min_lr) = self.schedule.floor_above(base_rate) {
            return Err(WgradError::InvalidConfig(format!(
                "cosine schedule min_lr {min_lr} is above the base learning rate {base_rate}, \
                 so the rate would rise: min_lr must be at most the optimizer's learning rate"
            )));
        }
        if let Some(clip) = self.clip_norm {
            check_clip_norm(clip)
                .map_err(|e| WgradError::InvalidConfig(format!("clip_norm {e}")))?;
        }
        if let Some(rule) = &self.early_stopping {
            rule.check().map_err(WgradError::InvalidConfig)?;
        }
        Ok(())
    }
}

/// A gradient clipping norm: finite and > 0 (`Err` says what is wrong, without the name, for
/// `FitConfig::check` and the command line's `--clip-norm`).
pub fn check_clip_norm(clip: f32) -> Result<(), String> {
    if clip.is_finite() && clip > 0.0 {
        Ok(())
    } else {
        Err(format!("must be finite and > 0, got {clip}"))
    }
}

/// The learning rate as a function of the epoch (0-based), from the optimizer's base rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Schedule {
    Constant,
    /// Multiply by `factor` every `every` epochs.
    Step {
        every: usize,
        factor: f32,
    },
    /// Multiply by `rate` every epoch.
    Exponential {
        rate: f32,
    },
    /// Cosine annealing from the base rate down to `min_lr` over `epochs` epochs, then flat.
    Cosine {
        epochs: usize,
        min_lr: f32,
    },
}

impl Schedule {
    pub fn learning_rate(&self, base: f32, epoch: usize) -> f32 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, factor } => base * factor.powi((epoch / every.max(1)) as i32),
            Schedule::Exponential { rate } => base * rate.powi(epoch as i32),
            Schedule::Cosine { epochs, min_lr } => {
                let progress = epoch.min(epochs) as f32 / epochs.max(1) as f32;
                min_lr + (base - min_lr) * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos())
            }
        }
    }

    /// A cosine schedule's `min_lr` where it is above `base_rate` (the rate would rise to it),
    /// for `FitConfig::check` and the command line's `--schedule`.
    pub fn floor_above(&self, base_rate: f32) -> Option<f32> {
        match *self {
            Schedule::Cosine { min_lr, .. } if min_lr > base_rate => Some(min_lr),
            _ => None,
        }
    }

    /// Checks the schedule's own numbers; `Err` says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let positive = |name: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{name} must be finite and > 0, got {v}"))
            }
        };
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::Step { every, factor } => {
                if every == 0 {
                    return Err("step schedule: `every` must be at least 1 epoch".into());
                }
                positive("step schedule factor", factor)
            }
            Schedule::Exponential { rate } => positive("exponential schedule rate", rate),
            Schedule::Cosine { epochs, min_lr } => {
                if epochs == 0 {
                    return Err("cosine schedule: `epochs` must be at least 1".into());
                }
                if min_lr.is_finite() && min_lr >= 0.0 {
                    Ok(())
                } else {
                    Err(format!(
                        "cosine schedule min_lr must be finite and ≥ 0, got {min_lr}"
                    ))
                }
            }
        }
    }
}

/// Which per-epoch figure early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    Loss,
    Accuracy,
    ValLoss,
    ValAccuracy,
}

impl Monitor {
    pub fn name(self) -> &'static str {
        match self {
            Monitor::Loss => "loss",
            Monitor::Accuracy => "accuracy",
            Monitor::ValLoss => "val_loss",
            Monitor::ValAccuracy => "val_accuracy",
        }
    }

    /// Whether larger is better.
    pub fn maximize(self) -> bool {
        matches!(self, Monitor::Accuracy | Monitor::ValAccuracy)
    }

    /// This figure in an epoch's record, where the epoch has it.
    pub fn value(self, record: &super::EpochRecord) -> Option<f32> {
        match self {
            Monitor::Loss => Some(record.loss),
            Monitor::Accuracy => record.accuracy,
            Monitor::ValLoss => record.val_loss,
            Monitor::ValAccuracy => record.val_accuracy,
        }
    }
}

impl std::str::FromStr for Monitor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "loss" => Ok(Monitor::Loss),
            "accuracy" => Ok(Monitor::Accuracy),
            "val_loss" => Ok(Monitor::ValLoss),
            "val_accuracy" => Ok(Monitor::ValAccuracy),
            _ => Err(format!(
                "unknown metric '{s}' (expected loss, accuracy, val_loss or val_accuracy)"
            )),
        }
    }
}

/// Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    pub monitor: Monitor,
    /// Epochs without improvement before stopping; at least 1.
    pub patience: usize,
    /// The least change that counts as an improvement, in the direction the monitor improves
    /// (so ≥ 0 whether it is minimised or maximised).
    pub min_delta: f32,
    /// Put back the weights of the best epoch when stopping (or at the end).
    pub restore_best: bool,
}

impl EarlyStopping {
    pub fn new(monitor: Monitor, patience: usize) -> Self {
        EarlyStopping {
            monitor,
            patience,
            min_delta: 0.0,
            restore_best: true,
        }
    }

    /// Whether `value` of the monitored figure improves on `best` (`None`: nothing yet) by
    /// more than `min_delta`.
    pub fn improves(&self, value: f32, best: Option<f32>) -> bool {
        let sign = if self.monitor.maximize() { 1.0 } else { -1.0 };
        best.is_none_or(|best| sign * (value - best) > self.min_delta)
    }

    /// The best epoch of `history` by this rule (its number and value), and the epochs since
    /// it: where the watch stands after those epochs.
    pub fn replay(&self, history: &super::History) -> (Option<(usize, f32)>, usize) {
        let mut best: Option<(usize, f32)> = None;
        let mut since = 0;
        for record in &history.epochs {
            let Some(value) = self.monitor.value(record) else {
                continue;
            };
            if self.improves(value, best.map(|(_, v)| v)) {
                best = Some((record.epoch, value));
                since = 0;
            } else {
                since += 1;
            }
        }
        (best, since)
    }

    /// Checks the rule's own numbers; `Err` says what is wrong. A NaN `min_delta` would count
    /// no epoch as an improvement, a negative one some worsening epochs, and patience 0 would
    /// mean what 1 means (stop at the first epoch without improvement).
    pub fn check(&self) -> Result<(), String> {
        if self.patience == 0 {
            return Err("early stopping patience must be at least 1 epoch, got 0".into());
        }
        if !(self.min_delta.is_finite() && self.min_delta >= 0.0) {
            return Err(format!(
                "early stopping min_delta must be finite and ≥ 0 (the least improvement that \
                 counts, whichever way {} improves), got {}",
                self.monitor.name(),
                self.min_delta
            ));
        }
        Ok(())
    }
}
