//! How `wgrad train` keeps its run directory resumable: a checkpoint and the history after an
//! epoch as often as `--checkpoint-every` says (by default when a second has passed since the
//! last one, so every epoch of a run whose epochs take longer), early stopping's best weights
//! beside them, and on Ctrl-C or a divergence a last checkpoint of the epochs not yet saved.
//!
//! Why not after every epoch: a checkpoint is about ten `fsync`s and a history that grows with
//! the run, and a run of thousands of tiny epochs (XOR, a small CSV table) spent nearly all its
//! time writing them (2,000 XOR epochs: 13.9 s, of which training took a fraction).

use super::train::TrainArgs;
use crate::error::{Result, WgradError};
use crate::io::{self, ModelMeta, Progress};
use crate::train::{Callback, EarlyStopping, EpochRecord, History, Model};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How often a checkpoint is written: `--checkpoint-every N` (epochs) or `SECONDS s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CheckpointEvery {
    /// After every `n`-th epoch since the last checkpoint.
    Epochs(usize),
    /// After the first epoch that ends this long after the last checkpoint (or the run's start).
    Interval(Duration),
}

impl CheckpointEvery {
    /// The default: every epoch, at most one a second.
    pub const DEFAULT: &'static str = "1s";

    /// Parses `N` (epochs, at least 1) or `Tms`, `Ts`, `Tm`, `Th` (milliseconds, seconds,
    /// minutes or hours, T ≥ 0; `0s` is every epoch).
    pub fn parse(text: &str) -> std::result::Result<CheckpointEvery, String> {
        let text = text.trim();
        let expected = || {
            format!(
                "expected a number of epochs (e.g. 5) or a time (e.g. 500ms, 30s, 10m, 2h), got \
                 '{text}'"
            )
        };
        // A number of epochs, or of the first unit whose suffix the text has.
        let units = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];
        let (number, unit) = units
            .iter()
            .find_map(|&(suffix, seconds)| Some((text.strip_suffix(suffix)?, Some(seconds))))
            .unwrap_or((text, None));
        match unit {
            None => match number.parse::<usize>() {
                Ok(0) => Err("must be at least 1 epoch, got 0".into()),
                Ok(epochs) => Ok(CheckpointEvery::Epochs(epochs)),
                Err(_) => Err(expected()),
            },
            Some(scale) => match number.trim().parse::<f64>() {
                Ok(value) if value.is_finite() && value >= 0.0 => {
                    Duration::try_from_secs_f64(value * scale)
                        .map(CheckpointEvery::Interval)
                        .map_err(|_| format!("{text} is longer than any run"))
                }
                _ => Err(expected()),
            },
        }
    }

    /// Whether a checkpoint is due after `epochs` epochs and `elapsed` time since the last.
    fn due(self, epochs: usize, elapsed: Duration) -> bool {
        match self {
            CheckpointEvery::Epochs(every) => epochs >= every,
            CheckpointEvery::Interval(every) => elapsed >= every,
        }
    }
}

/// What the directory's checkpoint holds, shared with the Ctrl-C handler and locked while a
/// checkpoint is written, so that what the handler says is what the directory keeps.
#[derive(Debug, Default)]
struct Saved {
    /// The epochs the checkpoint holds (0: none yet).
    epochs: usize,
    /// The last epoch trained, which may be later.
    trained: usize,
    /// Training has ended: the run is writing its report, final checkpoint and plots.
    ended: bool,
}

impl Saved {
    /// Says which epoch's checkpoint `dir` holds and how to continue.
    fn report_interrupt(&self, dir: &Path) {
        let dir = dir.display();
        match self.epochs {
            0 => note!("\nwgrad: interrupted before the first checkpoint; nothing was saved"),
            epochs => {
                let unsaved = match self.trained {
                    trained if trained > epochs => {
                        format!(
                            " ({}, trained since, not saved)",
                            epochs_from(epochs + 1, trained)
                        )
                    }
                    _ => String::new(),
                };
                note!(
                    "\nwgrad: interrupted; {dir} holds the checkpoint of epoch {epochs}: \
                     `wgrad train --resume {dir}` continues from there{unsaved}"
                )
            }
        }
    }
}

/// "epoch 4", or "epochs 4–9".
fn epochs_from(first: usize, last: usize) -> String {
    match first == last {
        true => format!("epoch {first}"),
        false => format!("epochs {first}–{last}"),
    }
}

fn lock(saved: &Mutex<Saved>) -> MutexGuard<'_, Saved> {
    saved.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The exit code of a run stopped by Ctrl-C (the shell's code for an interrupt).
const INTERRUPTED: i32 = 130;

/// The weights of the best epoch so far, by early stopping's rule, while a later epoch's are
/// the checkpoint's: the epoch number (u64) then the flat parameters (f32), little-endian.
/// Written with the first checkpoint after the best epoch (its own, where it has one), so that
/// whatever a kill leaves, the best epoch is either the checkpoint's own or the one this file
/// holds.
pub const BEST_WEIGHTS: &str = "best_weights.bin";

fn write_best_weights(dir: &Path, epoch: usize, params: &[f32]) -> Result<()> {
    let mut bytes = (epoch as u64).to_le_bytes().to_vec();
    bytes.extend(params.iter().flat_map(|v| v.to_le_bytes()));
    io::write_files_atomically(dir, &[(BEST_WEIGHTS, &bytes)])
}

/// The best weights `dir` holds, if it holds epoch `epoch`'s, `len` values; else why not (no
/// file where the run had no early stopping or a kill came first, another epoch's where it
/// watched another figure, or a damaged file).
pub fn read_best_weights(
    dir: &Path,
    epoch: usize,
    len: usize,
) -> std::result::Result<Vec<f32>, String> {
    let bytes = match io::read_regular_file(&dir.join(BEST_WEIGHTS), 8 + 4 * len as u64) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("there is no {BEST_WEIGHTS}"));
        }
        Err(e) => return Err(format!("{BEST_WEIGHTS} cannot be read: {e}")),
    };
    let damaged = || {
        format!(
            "{BEST_WEIGHTS} is damaged: {} bytes, where an epoch number and {len} weights take \
             {}",
            bytes.len(),
            8 + 4 * len
        )
    };
    let (head, values) = bytes.split_at_checked(8).ok_or_else(damaged)?;
    if values.len() != 4 * len {
        return Err(damaged());
    }
    let saved_epoch = u64::from_le_bytes(head.try_into().expect("8 bytes"));
    // No run trains 2³² epochs: such a number is damage, not another epoch.
    if saved_epoch >= u64::from(u32::MAX) {
        return Err(damaged());
    }
    if saved_epoch != epoch as u64 {
        return Err(format!("{BEST_WEIGHTS} holds epoch {saved_epoch}'s"));
    }
    Ok(values
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("chunks of 4")))
        .collect())
}

/// Where early stopping's best epoch stands for the best-weights file.
enum BestWeights {
    /// The file holds the best epoch's weights, or the checkpoint does (or no epoch is best).
    Saved,
    /// The best epoch was not checkpointed: its weights, for the next checkpoint to write.
    Unsaved(usize, Vec<f32>),
}

/// Writes a checkpoint and the history as `--checkpoint-every` says, and the last epochs'
/// on Ctrl-C, a divergence and at the end.
pub struct Checkpointer<'a> {
    dir: &'a Path,
    meta: &'a ModelMeta,
    args: &'a TrainArgs,
    every: CheckpointEvery,
    /// Epochs of earlier runs (when resuming), then this run's, as they end.
    history: History,
    /// How many of `history`'s epochs are earlier runs'.
    earlier_epochs: usize,
    /// The run's early stopping, whose best weights a resume needs (when it restores them),
    /// and its best epoch and value so far.
    early_stopping: Option<EarlyStopping>,
    best: Option<(usize, f32)>,
    best_weights: BestWeights,
    /// The last checkpoint: when, and after how many epochs of the run's history.
    written_at: Instant,
    written_epochs: usize,
    saved: Arc<Mutex<Saved>>,
    /// Set by Ctrl-C (where epochs were trained since the last checkpoint): the epoch in
    /// progress is saved as it ends, then the run exits.
    interrupted: Arc<AtomicBool>,
    /// The directory holds a run this one replaces, whose best weights and plots go with this
    /// run's first checkpoint (they must not pass for this run's, and stay the old run's
    /// until then).
    replacing: bool,
}

impl<'a> Checkpointer<'a> {
    /// A checkpointer for the run in `dir` that goes on after `earlier` (empty for a new
    /// run), with Ctrl-C's handler installed.
    pub fn new(
        dir: &'a Path,
        meta: &'a ModelMeta,
        args: &'a TrainArgs,
        every: CheckpointEvery,
        earlier: History,
        early_stopping: Option<EarlyStopping>,
        replacing: bool,
    ) -> Self {
        let epochs = earlier.last().map_or(0, |r| r.epoch);
        let saved = Arc::new(Mutex::new(Saved {
            epochs,
            trained: epochs,
            ended: false,
        }));
        let interrupted = Arc::new(AtomicBool::new(false));
        handle_interrupts(dir.to_path_buf(), saved.clone(), interrupted.clone());
        let best = early_stopping
            .as_ref()
            .and_then(|rule| rule.replay(&earlier).0);
        Checkpointer {
            dir,
            meta,
            args,
            every,
            written_epochs: earlier.epochs.len(),
            earlier_epochs: earlier.epochs.len(),
            history: earlier,
            early_stopping,
            best,
            best_weights: BestWeights::Saved,
            written_at: Instant::now(),
            saved,
            interrupted,
            replacing,
        }
    }

    /// Training has ended: an interrupt from now on lets the run finish its files first, as
    /// a resume would have nothing left to train.
    pub fn training_ended(&self) {
        lock(&self.saved).ended = true;
    }

    /// The run's whole history: earlier runs' epochs, then this run's.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Writes the checkpoint of the model as it is, for the epochs recorded, if they are not
    /// saved yet: after a divergence, which leaves the model as the last good epoch ended.
    pub fn save_unsaved(&mut self, model: &mut Model) -> Result<()> {
        if self.history.epochs.len() > self.written_epochs {
            self.write(model)?;
        }
        Ok(())
    }

    /// The final checkpoint, of the model as the run leaves it (after early stopping, the best
    /// epoch's weights).
    pub fn finish(&mut self, model: &mut Model) -> Result<()> {
        self.write(model)
    }

    /// Writes the checkpoint, the best weights where a resume needs them, and the history.
    fn write(&mut self, model: &mut Model) -> Result<()> {
        let epochs_done = self.history.last().map_or(0, |r| r.epoch);
        let fit = serde_json::to_value(self.args).map_err(|e| {
            WgradError::InvalidConfig(format!("the training options cannot be saved: {e}"))
        })?;
        let progress = Progress {
            epochs_done,
            fit,
            history: self.history.clone(),
        };
        let mut saved = lock(&self.saved);
        io::save_checkpoint(self.dir, model, self.meta, &progress)?;
        saved.epochs = epochs_done;
        saved.trained = saved.trained.max(epochs_done);
        if std::mem::take(&mut self.replacing) {
            // The replaced run's: its best weights, and plots this run draws at its end.
            for name in [BEST_WEIGHTS, "history.png", "boundary.png"] {
                let file = self.dir.join(name);
                if file.exists() {
                    std::fs::remove_file(&file).map_err(|e| WgradError::io(&file, e))?;
                }
            }
        }
        let restores = self
            .early_stopping
            .as_ref()
            .is_some_and(|rule| rule.restore_best);
        if restores && let Some((best, _)) = self.best {
            match std::mem::replace(&mut self.best_weights, BestWeights::Saved) {
                BestWeights::Unsaved(epoch, params) if epoch == best => {
                    write_best_weights(self.dir, best, &params)?
                }
                _ if best == epochs_done => write_best_weights(self.dir, best, &model.params()?)?,
                _ => {}
            }
        }
        write_history(self.dir, &self.history)?;
        drop(saved);
        self.written_at = Instant::now();
        self.written_epochs = self.history.epochs.len();
        Ok(())
    }

    /// Follows early stopping's watch over the new epoch; where it is the best and its
    /// checkpoint is not written now, keeps its weights for the next one.
    fn watch(&mut self, model: &Model, record: &EpochRecord, checkpoint_now: bool) -> Result<()> {
        let Some(rule) = &self.early_stopping else {
            return Ok(());
        };
        let Some(value) = rule.monitor.value(record) else {
            return Ok(());
        };
        if rule.improves(value, self.best.map(|(_, v)| v)) {
            self.best = Some((record.epoch, value));
            if rule.restore_best && !checkpoint_now {
                self.best_weights = BestWeights::Unsaved(record.epoch, model.params()?);
            }
        }
        Ok(())
    }
}

impl Callback for Checkpointer<'_> {
    fn on_epoch_end(&mut self, model: &mut Model, history: &History) -> Result<()> {
        // `history` is this run's: the epochs after those already recorded are new.
        let new = &history.epochs[self.history.epochs.len() - self.earlier_epochs..];
        let interrupted = self.interrupted.load(Ordering::SeqCst);
        let epochs_since = self.history.epochs.len() + new.len() - self.written_epochs;
        let checkpoint_now = interrupted || self.every.due(epochs_since, self.written_at.elapsed());
        for record in new {
            self.watch(model, record, checkpoint_now)?;
            self.history.epochs.push(record.clone());
        }
        if checkpoint_now {
            self.write(model)?;
        }
        let mut saved = lock(&self.saved);
        saved.trained = self.history.last().map_or(0, |r| r.epoch);
        if interrupted {
            saved.report_interrupt(self.dir);
            std::process::exit(INTERRUPTED);
        }
        Ok(())
    }
}

/// On Ctrl-C (or SIGTERM, SIGHUP) during training: where epochs were trained since the last
/// checkpoint, the first one lets the epoch in progress end, to be saved with them (the
/// training thread then exits), and says so; after training, it lets the run save itself;
/// otherwise, or at a second one, it says which
/// epoch's checkpoint the directory holds and how to continue, and exits with 130. It waits
/// for a checkpoint being written and exits holding the lock, so the one it names is the one
/// the directory keeps.
fn handle_interrupts(dir: PathBuf, saved: Arc<Mutex<Saved>>, interrupted: Arc<AtomicBool>) {
    // One handler per process; the command line trains once.
    let _ = ctrlc::set_handler(move || {
        let saved = lock(&saved);
        let first = !interrupted.swap(true, Ordering::SeqCst);
        if first && saved.ended {
            note!(
                "\nwgrad: interrupted; training has ended, saving the run (interrupt again to stop now)"
            );
            return;
        }
        if first && saved.trained > saved.epochs {
            note!(
                "\nwgrad: interrupted; stopping when the epoch in progress ends, to save it with \
                 {} (interrupt again to stop now without them)",
                epochs_from(saved.epochs + 1, saved.trained)
            );
            return;
        }
        saved.report_interrupt(&dir);
        std::process::exit(INTERRUPTED);
    });
}

pub fn write_history(dir: &Path, history: &History) -> Result<()> {
    let mut csv = String::from(
        "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,seconds,samples_per_second\n",
    );
    let opt = |v: Option<f32>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in &history.epochs {
        csv += &format!(
            "{},{},{},{},{},{},{:.4},{:.1}\n",
            r.epoch,
            r.loss,
            opt(r.accuracy),
            opt(r.val_loss),
            opt(r.val_accuracy),
            r.learning_rate,
            r.seconds,
            r.samples_per_second
        );
    }
    let json = serde_json::to_string_pretty(history).expect("history serializes");
    io::write_files_atomically(
        dir,
        &[
            ("history.csv", csv.as_bytes()),
            ("history.json", json.as_bytes()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_every_takes_epochs_or_a_time() {
        let parse = CheckpointEvery::parse;
        assert_eq!(parse("1"), Ok(CheckpointEvery::Epochs(1)));
        assert_eq!(parse(" 25 "), Ok(CheckpointEvery::Epochs(25)));
        assert_eq!(
            parse("30s"),
            Ok(CheckpointEvery::Interval(Duration::from_secs(30)))
        );
        assert_eq!(
            parse("0.5s"),
            Ok(CheckpointEvery::Interval(Duration::from_millis(500)))
        );
        assert_eq!(
            parse("10m"),
            Ok(CheckpointEvery::Interval(Duration::from_secs(600)))
        );
        assert_eq!(parse("0s"), Ok(CheckpointEvery::Interval(Duration::ZERO)));
        assert_eq!(
            parse("2h"),
            Ok(CheckpointEvery::Interval(Duration::from_secs(7200)))
        );
        assert_eq!(
            parse("250ms"),
            Ok(CheckpointEvery::Interval(Duration::from_millis(250)))
        );
        assert_eq!(
            parse(CheckpointEvery::DEFAULT),
            Ok(CheckpointEvery::Interval(Duration::from_secs(1)))
        );
        assert!(parse("0").unwrap_err().contains("at least 1 epoch"));
        assert_eq!(
            parse("99999999999999999999m"),
            Err("99999999999999999999m is longer than any run".into())
        );
        for bad in [
            "", "-1", "1.5", "s", "-2s", "nans", "infm", "1d", "ms", "5 epochs",
        ] {
            let error = parse(bad).unwrap_err();
            assert!(
                error.contains(&format!("got '{}'", bad.trim())),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn best_weights_are_read_back_or_said_why_not() {
        let dir = std::env::temp_dir().join(format!("wgrad-best-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            read_best_weights(&dir, 3, 2),
            Err("there is no best_weights.bin".into())
        );
        write_best_weights(&dir, 3, &[0.5, -2.0]).unwrap();
        assert_eq!(read_best_weights(&dir, 3, 2), Ok(vec![0.5, -2.0]));
        assert_eq!(
            read_best_weights(&dir, 4, 2),
            Err("best_weights.bin holds epoch 3's".into())
        );
        let damaged = "best_weights.bin is damaged: 16 bytes, where an epoch number and 3 \
                       weights take 20";
        assert_eq!(read_best_weights(&dir, 3, 3), Err(damaged.into()));
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend([0; 8]);
        std::fs::write(dir.join(BEST_WEIGHTS), bytes).unwrap();
        assert!(
            read_best_weights(&dir, 3, 2)
                .unwrap_err()
                .contains("is damaged")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_checkpoint_is_due_after_its_epochs_or_its_time() {
        let every_3 = CheckpointEvery::Epochs(3);
        assert!(!every_3.due(2, Duration::from_secs(100)));
        assert!(every_3.due(3, Duration::ZERO));
        let every_second = CheckpointEvery::Interval(Duration::from_secs(1));
        assert!(!every_second.due(1000, Duration::from_millis(999)));
        assert!(every_second.due(1, Duration::from_secs(1)));
        assert!(CheckpointEvery::Interval(Duration::ZERO).due(1, Duration::ZERO));
    }
}
