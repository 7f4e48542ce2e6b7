//! What `wgrad train` shows while it trains: a progress bar per epoch (samples and samples/s)
//! on a terminal, one plain line per epoch otherwise, nothing under `--quiet`.

use crate::error::Result;
use crate::train::{Callback, History, Model};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct ProgressDisplay {
    epochs: usize,
    quiet: bool,
    terminal: bool,
    bar: Option<ProgressBar>,
}

impl ProgressDisplay {
    pub fn new(epochs: usize, quiet: bool) -> Self {
        ProgressDisplay {
            epochs,
            quiet,
            terminal: std::io::stderr().is_terminal(),
            bar: None,
        }
    }
}

impl Callback for ProgressDisplay {
    fn on_epoch_begin(&mut self, epoch: usize, samples: usize) {
        if self.quiet || !self.terminal {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(samples as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} samples, {per_sec}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("{epoch}/{}", self.epochs));
        self.bar = Some(bar);
    }

    fn on_step(&mut self, rows: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(rows as u64);
        }
    }

    fn on_epoch_end(&mut self, _model: &mut Model, history: &History) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !self.quiet {
            let record = history.last().expect("called after an epoch");
            note!("{}", crate::train::format_epoch(record, self.epochs));
        }
        Ok(())
    }
}
