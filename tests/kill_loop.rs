//! Kill tests: `wgrad train` is killed (SIGKILL) at random moments, many times — before its
//! first checkpoint, mid-epoch, while a checkpoint is being written — alternating fresh runs
//! and `--resume` of the killed directory. After every kill the directory must hold only the
//! files of the format (and at most one temporary file per name: the write the kill
//! interrupted), load as a model (library and `wgrad eval`) with finite weights, and hold a
//! checkpoint that resumes from the epoch it records, the earlier epochs' history intact.
//!
//! The kill moments come from a generator seeded from the clock, printed; `WGRAD_KILL_SEED=N`
//! repeats a run's choices (the timing of the processes themselves still varies).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wgrad::Device;
use wgrad::io::{load_checkpoint, load_model};

/// The files `wgrad train` writes into a model directory.
const FILES: [&str; 10] = [
    // The run's lock, and early stopping's best weights.
    ".lock",
    "best_weights.bin",
    "model.safetensors",
    "model.json",
    "checkpoint.safetensors",
    "checkpoint.json",
    "history.csv",
    "history.json",
    "history.png",
    "boundary.png",
];
/// How long any one wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// xorshift64*, seeded through splitmix64: enough to spread the kill moments.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, max: u64) -> Duration {
        Duration::from_micros(self.below(max * 1000))
    }
}

fn seed(test: &str) -> u64 {
    let seed = std::env::var("WGRAD_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("a clock after 1970")
                .as_nanos() as u64
        });
    println!("{test}: WGRAD_KILL_SEED={seed}");
    seed
}

/// How one device's runs are set up and how many kills they get.
struct Setup {
    test: &'static str,
    device: &'static str,
    batch_size: &'static str,
    /// Environment of the training processes.
    env: &'static [(&'static str, &'static str)],
    /// Fresh directories, each killed once fresh then `resumes` times resumed.
    cycles: usize,
    resumes: usize,
    /// Roughly the time to start and train 3 epochs: the range of the random delays.
    span_ms: u64,
    /// Roughly the compute time of one epoch, without its checkpoint.
    epoch_ms: u64,
}

/// When to kill a training process.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// After a random delay from the start.
    Delay(Duration),
    /// When `epochs` more epochs are in `history.csv`, after a fraction of an epoch.
    MidEpoch { epochs: usize, delay: Duration },
    /// When the `nth` new temporary file appears: mid-write of a checkpoint or the history.
    Writing { nth: usize },
}

impl Moment {
    /// A random moment; for a `fresh` run the delays are shorter, so that most of them fall
    /// before the first checkpoint.
    fn random(rng: &mut Rng, setup: &Setup, fresh: bool) -> Moment {
        match rng.below(3) {
            0 if fresh => Moment::Delay(rng.millis(setup.span_ms / 3)),
            0 => Moment::Delay(rng.millis(setup.span_ms)),
            1 => Moment::MidEpoch {
                epochs: 1 + rng.below(3) as usize,
                delay: rng.millis(setup.epoch_ms),
            },
            _ => Moment::Writing {
                nth: 1 + rng.below(12) as usize,
            },
        }
    }
}

/// What the kills left, by kind.
#[derive(Debug, Default)]
struct Tally {
    /// No checkpoint yet.
    before_first: usize,
    /// Temporary files left: killed while writing.
    while_writing: usize,
    /// A checkpoint and no temporary file: killed between writes.
    between_writes: usize,
}

impl Tally {
    fn kills(&self) -> usize {
        self.before_first + self.while_writing + self.between_writes
    }
}

/// What a checkpoint recorded: the epochs done and the bits of each epoch's loss.
#[derive(Debug, Clone, PartialEq)]
struct Recorded {
    epochs_done: usize,
    losses: Vec<u32>,
}

fn wgrad(setup: &Setup, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wgrad"));
    command
        .args(args)
        .args(["--device", setup.device])
        .envs(setup.env.iter().copied());
    command
}

fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Starts a training run into `dir`: fresh, or resuming the checkpoint there.
fn start(setup: &Setup, dir: &Path, resume: bool) -> Child {
    let mut command = if resume {
        wgrad(setup, &["train", "--resume", s(dir), "--quiet"])
    } else {
        wgrad(
            setup,
            &[
                "train",
                "--data",
                "spirals",
                "--layers",
                "2,128,128,3",
                "--epochs",
                "1000000",
                "--batch-size",
                setup.batch_size,
                "--no-plots",
                "--quiet",
                // A checkpoint after every epoch, so that kills fall while one is written.
                "--checkpoint-every",
                "1",
                "--out",
                s(dir),
            ],
        )
    };
    command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the wgrad binary starts")
}

/// What the child wrote on stderr (once it has exited).
fn stderr_of(child: &mut Child) -> String {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    stderr
}

/// Fails with the child's message if it has exited (it should still be training).
fn assert_running(child: &mut Child, waiting_for: &str) {
    if let Some(status) = child.try_wait().expect("wait on the child") {
        let stderr = stderr_of(child);
        panic!("wgrad train exited ({status}) while waiting for {waiting_for}:\n{stderr}");
    }
}

/// Names of the temporary files in `dir` (`.NAME.tmp-…`).
fn temp_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.contains(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

fn history_rows(dir: &Path) -> usize {
    fs::read_to_string(dir.join("history.csv"))
        .map(|text| text.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

/// Waits for `moment`, then kills the child (SIGKILL) and reaps it.
fn kill_at(mut child: Child, dir: &Path, moment: Moment) {
    let started = Instant::now();
    let waited = |what: &str| {
        assert!(started.elapsed() < PATIENCE, "no {what} after {PATIENCE:?}");
    };
    match moment {
        Moment::Delay(delay) => std::thread::sleep(delay),
        Moment::MidEpoch { epochs, delay } => {
            let target = history_rows(dir) + epochs;
            while history_rows(dir) < target {
                assert_running(&mut child, "an epoch to end");
                waited("epoch end");
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(delay);
        }
        Moment::Writing { nth } => {
            let old = temp_names(dir);
            let mut seen = BTreeSet::new();
            while seen.len() < nth {
                seen.extend(temp_names(dir).difference(&old).cloned());
                assert_running(&mut child, "a temporary file");
                waited("temporary file");
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    }
    // Killing a process that has already exited is not an error here; the wait tells.
    let _ = child.kill();
    let status = child.wait().expect("reap the child");
    assert!(
        status.code().is_none(),
        "wgrad train ended by itself ({status}) instead of being killed at {moment:?}:\n{}",
        stderr_of(&mut child)
    );
}

/// Checks the entries of `dir`: only [`FILES`] and temporary files of them, at most one per
/// name (each write removes those of earlier interrupted writes). Returns how many are
/// temporary.
fn check_entries(dir: &Path) -> usize {
    let mut temps: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for entry in fs::read_dir(dir).expect("list the model directory") {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            entry.file_type().expect("file type").is_file(),
            "{name} in {} is not a file",
            dir.display()
        );
        if FILES.contains(&name.as_str()) {
            continue;
        }
        let base = FILES
            .iter()
            .find(|file| name.starts_with(&format!(".{file}.tmp-")))
            .unwrap_or_else(|| panic!("unexpected file {name} in {}", dir.display()));
        temps.entry(base).or_default().push(name);
    }
    for (base, names) in &temps {
        assert!(
            names.len() <= 1,
            "temporary files of {base} pile up in {}: {names:?}",
            dir.display()
        );
    }
    temps.values().map(Vec::len).sum()
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to).expect("create the copy");
    for entry in fs::read_dir(from).expect("list the model directory") {
        let entry = entry.expect("a directory entry");
        fs::copy(entry.path(), to.join(entry.file_name())).expect("copy a file");
    }
}

fn loss_bits(history: &wgrad::History) -> Vec<u32> {
    history.epochs.iter().map(|r| r.loss.to_bits()).collect()
}

/// The bits of each epoch's loss in `history.csv`, after checking that its epochs are 1, 2, ….
fn history_losses(dir: &Path) -> Vec<u32> {
    let Ok(text) = fs::read_to_string(dir.join("history.csv")) else {
        return Vec::new();
    };
    let mut losses = Vec::new();
    for (i, line) in text.lines().skip(1).enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[0], (i + 1).to_string(), "history.csv: {line}");
        let loss: f32 = fields[1].parse().expect("a loss in history.csv");
        losses.push(loss.to_bits());
    }
    losses
}

/// Everything that must hold after a kill; `before` is what the previous kill of this
/// directory left. Returns what the directory's checkpoint now records, if it holds one.
fn check_after_kill(
    setup: &Setup,
    dir: &Path,
    scratch: &Path,
    before: Option<&Recorded>,
    tally: &mut Tally,
) -> Option<Recorded> {
    if !dir.exists() {
        assert!(before.is_none(), "a checkpointed directory disappeared");
        tally.before_first += 1;
        return None;
    }
    let temps = check_entries(dir);
    // The model, read as it is (load_model never writes).
    let model = load_model(dir, Device::Cpu);
    // The checkpoint, from a copy: loading one completes interrupted renames, and the next
    // run must find the directory exactly as the kill left it.
    copy_dir(dir, scratch);
    let (resumable, _, progress) = match load_checkpoint(scratch, Device::Cpu) {
        Ok(loaded) => loaded,
        Err(e) => {
            assert!(
                before.is_none(),
                "the checkpoint of epoch {} is lost: {e}",
                before.unwrap().epochs_done
            );
            let message = e.to_string();
            assert!(
                message.contains("checkpoint.json") && !dir.join("checkpoint.json").exists(),
                "no checkpoint, but not for want of one: {message}"
            );
            tally.before_first += 1;
            return None;
        }
    };
    if temps > 0 {
        tally.while_writing += 1;
    } else {
        tally.between_writes += 1;
    }
    let (model, _) = model.unwrap_or_else(|e| {
        panic!(
            "{} holds a checkpoint but does not load as a model: {e}",
            dir.display()
        )
    });
    let weights = model.params().expect("the weights");
    assert!(weights.iter().all(|w| w.is_finite()), "non-finite weights");
    let resumed = resumable.params().expect("the checkpoint's weights");
    assert!(resumed.iter().all(|w| w.is_finite()), "non-finite weights");
    let left = temp_names(scratch)
        .into_iter()
        .filter(|name| !name.starts_with(".history."))
        .collect::<Vec<_>>();
    assert!(
        left.is_empty(),
        "loading the checkpoint left temporary files: {left:?}"
    );

    let recorded = Recorded {
        epochs_done: progress.epochs_done,
        losses: loss_bits(&progress.history),
    };
    let epochs: Vec<usize> = progress.history.epochs.iter().map(|r| r.epoch).collect();
    assert_eq!(epochs, (1..=recorded.epochs_done).collect::<Vec<_>>());
    if let Some(before) = before {
        assert!(
            recorded.epochs_done >= before.epochs_done
                && recorded.losses[..before.losses.len()] == before.losses[..],
            "the history went back or changed: {before:?} then {recorded:?}"
        );
    }
    // history.csv is rewritten after each checkpoint: it may lag, never differ.
    let rows = history_losses(dir);
    assert!(
        rows.len() <= recorded.epochs_done && rows[..] == recorded.losses[..rows.len()],
        "history.csv ({} epochs) is not a prefix of the checkpoint's history ({})",
        rows.len(),
        recorded.epochs_done
    );

    let eval = wgrad(setup, &["eval", "--model", s(dir), "--data", "spirals"])
        .output()
        .expect("wgrad eval runs");
    let text = String::from_utf8_lossy(&eval.stdout) + String::from_utf8_lossy(&eval.stderr);
    assert!(
        eval.status.success() && text.contains("accuracy"),
        "wgrad eval fails on the killed directory:\n{text}"
    );
    Some(recorded)
}

/// A resume of a directory without a checkpoint fails with a message, not a panic.
fn assert_resume_refused(setup: &Setup, dir: &Path) {
    let output = wgrad(setup, &["train", "--resume", s(dir)])
        .output()
        .expect("wgrad runs");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.code() == Some(1) && text.contains("checkpoint.json"),
        "resuming without a checkpoint: {:?}\n{text}",
        output.status
    );
}

/// Resumes `dir` to completion, two epochs past its checkpoint, and checks the result.
fn finish(setup: &Setup, dir: &Path, recorded: &Recorded) {
    let target = recorded.epochs_done + 2;
    let output = wgrad(
        setup,
        &["train", "--resume", s(dir), "--epochs", &target.to_string()],
    )
    .output()
    .expect("wgrad runs");
    let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the last resume fails:\n{text}");
    assert!(
        text.contains(&format!("resuming after epoch {}", recorded.epochs_done))
            && text.contains(&format!(
                "2 epochs ({}–{target}) in",
                recorded.epochs_done + 1
            )),
        "not resumed from epoch {}:\n{text}",
        recorded.epochs_done
    );
    check_entries(dir);
    let temps = temp_names(dir);
    assert!(
        temps.is_empty(),
        "temporary files after a full run: {temps:?}"
    );
    let (_, _, progress) = load_checkpoint(dir, Device::Cpu).expect("the final checkpoint");
    let losses = loss_bits(&progress.history);
    assert_eq!(losses.len(), target);
    assert_eq!(
        losses[..recorded.losses.len()],
        recorded.losses[..],
        "the resumed run rewrote earlier epochs"
    );
    assert_eq!(history_losses(dir), losses, "history.csv");
}

fn kill_loop(setup: &Setup) {
    let mut rng = Rng::new(seed(setup.test));
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "kill_loop-{}-{}",
        setup.test,
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&root);
    let scratch = root.join("copy");
    let started = Instant::now();
    let mut tally = Tally::default();
    for cycle in 0..setup.cycles {
        let dir: PathBuf = root.join(format!("run{cycle}"));
        let mut recorded = None;
        // Fresh runs until one leaves a checkpoint, then resumes, each killed.
        let mut resumes = 0;
        while resumes < setup.resumes {
            let resume = recorded.is_some();
            let moment = Moment::random(&mut rng, setup, !resume);
            kill_at(start(setup, &dir, resume), &dir, moment);
            let now = check_after_kill(setup, &dir, &scratch, recorded.as_ref(), &mut tally);
            println!(
                "{}: {} killed at {moment:?}: {}",
                setup.test,
                if resume { "resume" } else { "fresh run" },
                match &now {
                    Some(r) => format!("checkpoint of epoch {}", r.epochs_done),
                    None => "no checkpoint".into(),
                }
            );
            match (&now, resume) {
                (None, _) if dir.exists() => assert_resume_refused(setup, &dir),
                (Some(_), true) => resumes += 1,
                _ => {}
            }
            recorded = now.or(recorded);
        }
        finish(setup, &dir, recorded.as_ref().expect("a checkpoint"));
    }
    println!(
        "{}: {} kills in {:.1} s: {tally:?}",
        setup.test,
        tally.kills(),
        started.elapsed().as_secs_f64()
    );
    assert!(tally.kills() >= setup.cycles * (setup.resumes + 1));
    fs::remove_dir_all(&root).expect("remove the scratch directories");
}

#[test]
fn cpu_training_survives_random_kills() {
    kill_loop(&Setup {
        test: "cpu",
        device: "cpu",
        batch_size: "4",
        env: &[],
        cycles: 8,
        resumes: 4,
        span_ms: 120,
        epoch_ms: 18,
    });
}

#[test]
fn gpu_training_survives_random_kills() {
    if common::skip_gpu("gpu_training_survives_random_kills") {
        return;
    }
    kill_loop(&Setup {
        test: "gpu",
        device: "gpu",
        batch_size: "16",
        // A fixed matmul configuration: no autotuning (seconds on lavapipe) at start-up.
        env: &[("WGRAD_MATMUL", "direct8x8"), ("NODEVICE_SELECT", "1")],
        cycles: 3,
        resumes: 2,
        span_ms: 600,
        epoch_ms: 40,
    });
}
