//! The `wgrad` binary end to end: train, eval, predict, summary, devices, bad options, and a
//! training process killed mid-run that resumes from its last checkpoint.

mod common;

use common::TempDir;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn wgrad(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args(args)
        .output()
        .expect("the wgrad binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ok(args: &[&str]) -> String {
    let output = wgrad(args);
    assert!(
        output.status.success(),
        "wgrad {args:?} failed:\n{}",
        text(&output)
    );
    text(&output)
}

fn temp_dir(name: &str) -> TempDir {
    TempDir::new("cli", name)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `wgrad predict` with `model` on `input`, on the CPU (stdout holds the predictions).
fn predict_on_cpu(model: &Path, input: &Path) -> Output {
    wgrad(&[
        "predict",
        "--model",
        s(model),
        "--input",
        s(input),
        "--device",
        "cpu",
    ])
}

#[test]
fn train_eval_predict_summary_on_a_csv_file() {
    let dir = temp_dir("csv");
    // Two string classes separated by x0 + x1, a third column of noise.
    let mut csv = String::from("x0,x1,noise,label\n");
    for i in 0..200 {
        let (a, b) = (
            ((i * 37) % 101) as f32 / 50.0 - 1.0,
            ((i * 53) % 97) as f32 / 48.0 - 1.0,
        );
        let label = if a + b > 0.0 { "up" } else { "down" };
        csv += &format!("{a},{b},{},{label}\n", (i % 7) as f32);
    }
    let data = dir.join("train.csv");
    std::fs::write(&data, &csv).unwrap();
    let model = dir.join("model");
    let out = ok(&[
        "train",
        "--data",
        &format!("csv:{}", s(&data)),
        "--layers",
        "3,16,2",
        "--epochs",
        "30",
        "--batch-size",
        "16",
        "--lr",
        "0.01",
        "--validation-split",
        "0.2",
        "--device",
        "cpu",
        "--out",
        s(&model),
    ]);
    assert!(out.contains("validation accuracy"), "{out}");
    // The banner says what --task auto made of the target.
    assert!(
        out.contains("; classification of \"label\", 2 classes)"),
        "{out}"
    );
    for file in [
        "model.safetensors",
        "model.json",
        "history.csv",
        "history.json",
        "history.png",
        "checkpoint.json",
    ] {
        assert!(model.join(file).exists(), "{file} missing");
    }
    let history = std::fs::read_to_string(model.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 31, "a header and 30 epochs");
    assert!(
        std::fs::read(model.join("history.png"))
            .unwrap()
            .starts_with(b"\x89PNG\r\n\x1a\n")
    );

    let eval = ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        &format!("csv:{}", s(&data)),
        "--device",
        "cpu",
    ]);
    let accuracy: f32 = eval
        .split("accuracy ")
        .nth(1)
        .unwrap()
        .split('%')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(accuracy > 90.0, "{eval}");
    assert!(
        eval.contains("confusion matrix") && eval.contains("down") && eval.contains("up"),
        "{eval}"
    );

    // The same rows with the columns in another order and an extra column of words: eval
    // and --validation-data find the columns by name, and name one that is missing.
    let mut shuffled = String::from("id,label,noise,x1,x0\n");
    for (i, line) in csv.lines().skip(1).enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        shuffled += &format!(
            "row{i},{},{},{},{}\n",
            fields[3], fields[2], fields[1], fields[0]
        );
    }
    let reordered = dir.join("reordered.csv");
    std::fs::write(&reordered, &shuffled).unwrap();
    let eval_reordered = ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&reordered),
        "--device",
        "cpu",
    ]);
    let loss_line = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("loss"))
            .map(String::from)
    };
    assert_eq!(
        loss_line(&eval_reordered),
        loss_line(&eval),
        "{eval_reordered}"
    );
    let validated = ok(&[
        "train",
        "--data",
        s(&data),
        "--layers",
        "3,16,2",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--validation-data",
        s(&reordered),
        "--no-plots",
        "--out",
        s(&dir.join("validated")),
    ]);
    assert!(validated.contains("val_accuracy"), "{validated}");
    let missing = dir.join("missing.csv");
    std::fs::write(&missing, "x0,label,x1\n0.5,up,0.5\n").unwrap();
    for args in [
        &["eval", "--model", s(&model), "--data", s(&missing)][..],
        &[
            "train",
            "--data",
            s(&data),
            "--validation-data",
            s(&missing),
            "--out",
            s(&dir.join("v2")),
        ],
    ] {
        fails(args, "missing.csv: missing column \"noise\"");
    }
    // Named with or without a scaler (which had been what checked the width).
    let unscaled = dir.join("unscaled");
    ok(&[
        "train",
        "--data",
        s(&data),
        "--scale",
        "none",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-plots",
        "--out",
        s(&unscaled),
    ]);
    for model in [&model, &unscaled] {
        fails(
            &[
                "eval",
                "--model",
                s(model),
                "--data",
                "xor",
                "--device",
                "cpu",
            ],
            "--data xor: the model was trained on the inputs \"x0\", \"x1\", \"noise\", and xor \
             has \"x0\", \"x1\"",
        );
    }

    // Prediction inputs: the feature columns in another order, without the label.
    let mut inputs = String::from("noise,x1,x0\n");
    inputs += "1,0.9,0.8\n2,-0.9,-0.7\n";
    std::fs::write(dir.join("new.csv"), inputs).unwrap();
    let predictions = dir.join("predictions.csv");
    ok(&[
        "predict",
        "--model",
        s(&model),
        "--input",
        s(&dir.join("new.csv")),
        "--output",
        s(&predictions),
        "--device",
        "cpu",
    ]);
    let written = std::fs::read_to_string(&predictions).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines[0], "class,p_down,p_up");
    assert!(
        lines[1].starts_with("up,") && lines[2].starts_with("down,"),
        "{written}"
    );
    // Without --output the same CSV goes to standard output, and nothing else does.
    let to_stdout = wgrad(&[
        "predict",
        "--model",
        s(&model),
        "--input",
        s(&dir.join("new.csv")),
        "--device",
        "cpu",
    ]);
    assert!(to_stdout.status.success(), "{}", text(&to_stdout));
    assert_eq!(String::from_utf8_lossy(&to_stdout.stdout), written);
    // --output may not overwrite the input, by another name either (a hard link), nor a file
    // of the model; another name in the model's directory is fine.
    let model_json = std::fs::read(model.join("model.json")).unwrap();
    let linked = dir.join("linked.csv");
    std::fs::hard_link(dir.join("new.csv"), &linked).unwrap();
    let predict_into = |output: &Path| {
        [
            "predict",
            "--model",
            s(&model),
            "--input",
            s(&linked),
            "--output",
            s(output),
            "--device",
            "cpu",
        ]
        .map(String::from)
    };
    for (output, expected) in [
        (dir.join("new.csv"), "--output is the input file"),
        (
            model.join("model.json"),
            "--output is the model's own model.json: the predictions would overwrite the model",
        ),
    ] {
        let args = predict_into(&output);
        fails(&args.each_ref().map(String::as_str), expected);
    }
    assert_eq!(std::fs::read(model.join("model.json")).unwrap(), model_json);
    // Into a FIFO (another program reading the predictions) they are written, not renamed
    // over it.
    let fifo = dir.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    ok(&predict_into(&fifo).each_ref().map(String::as_str));
    assert_eq!(reader.join().unwrap(), written);
    {
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }
    let beside = model.join("predictions.csv");
    ok(&predict_into(&beside).each_ref().map(String::as_str));
    assert_eq!(std::fs::read_to_string(&beside).unwrap(), written);
    // With --input -, the inputs come from standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args([
            "predict",
            "--model",
            s(&model),
            "--input",
            "-",
            "--device",
            "cpu",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let inputs = std::fs::read(dir.join("new.csv")).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &inputs).unwrap();
    let from_stdin = child.wait_with_output().unwrap();
    assert!(from_stdin.status.success(), "{}", text(&from_stdin));
    assert_eq!(String::from_utf8_lossy(&from_stdin.stdout), written);

    let summary = ok(&["summary", "--model", s(&model)]);
    assert!(
        summary.contains("layers.0 (Dense)")
            && summary.contains("Total params: 98")
            && summary.contains("Feature columns: x0, x1, noise\n")
            && summary.contains("optimizer: adam (lr 0.01, beta1 0.9, beta2 0.999"),
        "{summary}"
    );
}

#[test]
fn synthetic_data_writes_a_decision_boundary() {
    let dir = temp_dir("moons");
    let out = ok(&[
        "train",
        "--data",
        "moons",
        "--epochs",
        "5",
        "--device",
        "cpu",
        "--out",
        s(&dir),
        "--quiet",
    ]);
    assert!(out.contains("test accuracy"), "{out}");
    let png = std::fs::read(dir.join("boundary.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5000);

    // A new run into the same directory says it replaces the old one, and leaves no picture
    // of it behind (one input: no decision boundary).
    let again = ok(&[
        "train",
        "--data",
        "regression",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--out",
        s(&dir),
    ]);
    assert!(
        again.contains("holds a run already; this one replaces it"),
        "{again}"
    );
    assert!(!dir.join("boundary.png").exists());
    assert!(dir.join("history.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();

    // In a directory that holds no run, a file of a name a run writes is the user's: training
    // there is refused and the file kept.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("history.csv"), "the user's").unwrap();
    let args = ["train", "--data", "xor", "--epochs", "1", "--out", s(&dir)];
    fails(
        &args,
        "holds a file history.csv that is not from a wgrad run",
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("history.csv")).unwrap(),
        "the user's"
    );
    // A file of a run's name is not a run unless it says so.
    std::fs::write(dir.join("model.json"), "{}").unwrap();
    fails(
        &args,
        "holds a file model.json that is not from a wgrad run",
    );
    std::fs::remove_file(dir.join("model.json")).unwrap();
    // Other files do not stand in the way.
    std::fs::remove_file(dir.join("history.csv")).unwrap();
    std::fs::write(dir.join("notes.txt"), "the user's").unwrap();
    ok(&args);
    assert!(dir.join("notes.txt").exists() && dir.join("model.json").exists());
}

/// `wgrad ARGS` with standard output and error going to pipes whose readers have quit.
fn run_with_closed_pipes(args: &[&str]) -> std::process::ExitStatus {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the wgrad binary runs");
    drop(child.stdout.take());
    drop(child.stderr.take());
    child.wait().expect("wgrad exits")
}

#[test]
fn closed_output_pipes_neither_stop_training_nor_fail_a_command() {
    let dir = temp_dir("closed-pipes");
    let train = [
        "train",
        "--data",
        "moons",
        "--epochs",
        "12",
        "--device",
        "cpu",
        "--no-plots",
        "--out",
        s(&dir),
    ];
    let status = run_with_closed_pipes(&train);
    assert!(status.success(), "train: {status}");
    let history = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 1 + 12, "{history}");
    for args in [
        &[
            "eval",
            "--model",
            s(&dir),
            "--data",
            "moons",
            "--device",
            "cpu",
        ][..],
        &["summary", "--model", s(&dir)],
        &[
            "predict",
            "--model",
            s(&dir),
            "--input",
            s(&dir.join("history.csv")),
        ],
    ] {
        let status = run_with_closed_pipes(args);
        // predict fails on its input (history.csv is no feature file), and says so, not a panic.
        let expected = if args[0] == "predict" {
            Some(1)
        } else {
            Some(0)
        };
        assert_eq!(status.code(), expected, "{args:?}: {status}");
    }
    // Output that cannot be written for another reason (a full disk) is an error.
    let full = Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args(["summary", "--model", s(&dir)])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(1), "{}", text(&full));
    assert!(
        text(&full).contains("writing the output failed"),
        "{}",
        text(&full)
    );
}

#[test]
fn early_stopping_says_when_it_stopped_and_which_weights_it_kept() {
    let dir = temp_dir("early-stopping");
    let out = ok(&[
        "train",
        "--data",
        "moons",
        "--validation-split",
        "0.3",
        "--early-stopping",
        "1",
        "--epochs",
        "300",
        "--lr",
        "0.05",
        "--device",
        "cpu",
        "--no-plots",
        // No checkpoint before the end: the best epoch's weights are kept for it in memory.
        "--checkpoint-every",
        "100000",
        "--out",
        s(&dir),
    ]);
    let last = number_after(&out, "early stopping after epoch ");
    assert!(last < 300, "{out}");
    assert!(
        out.contains("val_loss has not improved for 1 epoch\n"),
        "{out}"
    );
    // Patience 1: the best epoch is the one before the last.
    assert!(
        out.contains(&format!(
            "restored the weights of epoch {}, the best val_loss",
            last - 1
        )),
        "{out}"
    );
    // Resumed for more epochs, the run goes on from its best weights with the patience
    // counted afresh (its record would stop it at once).
    let epochs = (last + 10).to_string();
    let resumed = ok(&["train", "--resume", s(&dir), "--epochs", &epochs]);
    assert!(
        resumed.contains(&format!(
            "early stopping ended this run at epoch {}'s weights (val_loss had not improved \
             after it); training goes on from them, counting the patience afresh",
            last - 1
        )),
        "{resumed}"
    );
    assert!(
        resumed.contains(&format!("epoch {}/", last + 1)),
        "{resumed}"
    );
    // A new run into the directory drops the replaced run's best weights, which a resume of
    // the new run would otherwise take for its own.
    assert!(dir.join("best_weights.bin").exists());
    ok(&[
        "train",
        "--data",
        "moons",
        "--epochs",
        "1",
        "--out",
        s(&dir),
    ]);
    assert!(!dir.join("best_weights.bin").exists());
}

#[test]
fn eval_of_a_model_trained_on_a_built_in_set_finds_its_test_part_and_a_files_target() {
    let dir = temp_dir("built-in-eval");
    let model = dir.join("model");
    let train = ok(&[
        "train",
        "--data",
        "moons",
        "--epochs",
        "3",
        "--seed",
        "5",
        "--device",
        "cpu",
        "--no-plots",
        "--out",
        s(&model),
    ]);
    // The same test part as training scored: eval draws the set with the model's seed.
    let scored = train
        .split("test accuracy ")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .unwrap_or_else(|| panic!("no test accuracy in {train}"));
    let eval = ok(&["eval", "--model", s(&model), "--data", "moons"]);
    fails(
        &[
            "eval",
            "--model",
            s(&model),
            "--data",
            "moons",
            "--target",
            "y",
        ],
        "--target: picks a CSV file's target column; moons has its own labels",
    );
    assert!(
        eval.contains(&format!("accuracy {scored}%")),
        "{eval}\n{train}"
    );
    fails(
        &[
            "eval",
            "--model",
            s(&model),
            "--data",
            "mnist",
            "--seed",
            "3",
        ],
        "--seed: draws a built-in synthetic set; mnist is read as it is",
    );
    // A built-in set is read by position, so it must be like the model's training data: the
    // same task, inputs of the same names and the same classes.
    for (set, expected) in [
        (
            "spirals",
            "--data spirals: the model's classes are \"0\", \"1\", and spirals has the classes \"0\", \"1\", \"2\"",
        ),
        (
            "regression",
            "--data regression: the model is a classifier, and regression has values to regress",
        ),
        (
            "mnist",
            "--data mnist: the model was trained on the inputs \"x0\", \"x1\", and mnist has \"pixel0\"",
        ),
    ] {
        fails(&["eval", "--model", s(&model), "--data", set], expected);
    }
    let other_columns = dir.join("other_columns.csv");
    std::fs::write(
        &other_columns,
        "p,q,y\n0.1,0.9,0\n1.9,-0.2,1\n0.2,-0.1,1\n-0.8,0.5,0\n",
    )
    .unwrap();
    let csv_model = dir.join("csv_model");
    ok(&[
        "train",
        "--data",
        s(&other_columns),
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-plots",
        "--out",
        s(&csv_model),
    ]);
    fails(
        &["eval", "--model", s(&csv_model), "--data", "moons"],
        "--data moons: the model was trained on the inputs \"p\", \"q\", and moons has \"x0\", \"x1\"",
    );

    // The model's features are x0 and x1; its target has no name. A file whose last column
    // is a feature still has its one other column as the target.
    let rows = "label,x0,x1\n0,0.1,0.9\n1,1.9,-0.2\n1,0.2,-0.1\n0,-0.8,0.5\n";
    let labelled = dir.join("labelled.csv");
    std::fs::write(&labelled, rows).unwrap();
    let eval = ok(&["eval", "--model", s(&model), "--data", s(&labelled)]);
    assert!(eval.contains("4 samples"), "{eval}");
    let by_hand = ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&labelled),
        "--target",
        "label",
    ]);
    assert_eq!(eval, by_hand);
    // With two such columns it cannot tell which, and says so; --target tells it.
    let with_id = dir.join("with_id.csv");
    let mut lines = rows.lines();
    let mut text = format!("id,{}\n", lines.next().unwrap());
    for (i, line) in lines.enumerate() {
        text += &format!("{i},{line}\n");
    }
    std::fs::write(&with_id, text).unwrap();
    fails(
        &["eval", "--model", s(&model), "--data", s(&with_id)],
        "2 columns besides the model's features (\"id\", \"label\"): name the target",
    );
    let named = ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&with_id),
        "--target",
        "label",
    ]);
    assert_eq!(named, eval);
}

#[test]
fn a_quiet_run_on_two_columns_shows_its_final_figures_and_draws_the_boundary() {
    let dir = temp_dir("quiet-2d");
    let mut csv = String::from("a,b,label\n");
    for i in 0..60 {
        let (a, b) = (
            ((i * 37) % 101) as f32 / 50.0 - 1.0,
            ((i * 53) % 97) as f32 / 48.0 - 1.0,
        );
        csv += &format!("{a},{b},{}\n", if a > b { "yes" } else { "no" });
    }
    let data = dir.join("two.csv");
    std::fs::write(&data, csv).unwrap();
    let model = dir.join("model");
    let args = [
        "train",
        "--data",
        s(&data),
        "--epochs",
        "3",
        "--quiet",
        "--out",
        s(&model),
    ];
    let out = ok(&args);
    // No validation or test part: the last epoch's figures, the only ones there are.
    assert!(
        out.contains("epoch 3/3  loss ") && out.contains("accuracy "),
        "{out}"
    );
    assert!(model.join("boundary.png").exists(), "{out}");

    // A linear output trained with MSE gives scores, not probabilities: named so.
    let mut args = args.to_vec();
    args.extend(["--output-activation", "linear", "--loss", "mse"]);
    ok(&args);
    let header = ok(&["predict", "--model", s(&model), "--input", s(&data)]);
    assert!(header.starts_with("class,score_no,score_yes\n"), "{header}");
    // A linear output trained with cross-entropy gives logits, which predict turns into
    // probabilities: named so.
    let args = [&args[..args.len() - 1], &["ce"]].concat();
    ok(&args);
    let header = ok(&["predict", "--model", s(&model), "--input", s(&data)]);
    assert!(header.starts_with("class,p_no,p_yes\n"), "{header}");

    // 30 distinct integers are a regression target under --task auto; the banner says how
    // to have them as classes.
    let mut csv = String::from("a,b,grade\n");
    for i in 0..90 {
        csv += &format!("{},{},{}\n", i % 7, i % 11, i % 30);
    }
    std::fs::write(&data, csv).unwrap();
    let out = ok(&[
        "train",
        "--data",
        s(&data),
        "--epochs",
        "1",
        "--out",
        s(&model),
    ]);
    assert!(
        out.contains("regression of \"grade\"; --task classification would take its integers"),
        "{out}"
    );
    // 7 distinct integers (a rating) are classes under --task auto, with how to have them as
    // numbers; not where classes were asked for.
    let mut csv = String::from("a,b,quality\n");
    for i in 0..90 {
        csv += &format!("{},{},{}\n", i % 7, i % 11, 3 + i % 7);
    }
    std::fs::write(&data, csv).unwrap();
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--epochs",
        "1",
        "--out",
        s(&model),
    ];
    let hint = "classification of \"quality\", 7 classes; --task regression would take its \
                integers as numbers";
    let out = ok(&args);
    assert!(out.contains(hint), "{out}");
    // A built-in set's classes get no --task hint (--task is a CSV file's).
    let builtin = ok(&[
        "train",
        "--data",
        "spirals",
        "--epochs",
        "1",
        "--out",
        s(&model),
    ]);
    assert!(!builtin.contains("--task"), "{builtin}");
    args.extend(["--task", "classification"]);
    let out = ok(&args);
    assert!(
        out.contains("classification of \"quality\", 7 classes)") && !out.contains(hint),
        "{out}"
    );
}

/// The R² a regression report printed.
fn r2_in(text: &str) -> f32 {
    text.split("R² ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|r2| r2.parse().ok())
        .unwrap_or_else(|| panic!("no R² in {text}"))
}

#[test]
fn a_target_in_millions_is_learnt_once_scaled_and_predicted_in_its_units() {
    let dir = temp_dir("scale-target");
    let mut csv = String::from("a,b,price\n");
    let mut prices = vec![];
    for i in 0..200 {
        let (a, b) = (
            ((i * 37) % 101) as f32 / 50.0 - 1.0,
            ((i * 53) % 97) as f32 / 48.0 - 1.0,
        );
        let price = 5e6 + 1e6 * (a + 2.0 * b);
        prices.push(price);
        csv += &format!("{a},{b},{price}\n");
    }
    let data = dir.join("prices.csv");
    std::fs::write(&data, csv).unwrap();
    let model = dir.join("model");
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--epochs",
        "40",
        "--validation-split",
    ];
    args.extend(["0.2", "--no-plots", "--device", "cpu", "--out", s(&model)]);
    // As it is, the target gets a note, and the model learns little of it.
    let plain = ok(&args);
    assert!(
        plain.contains("--scale-target standard scales it"),
        "{plain}"
    );
    // A warning, not progress: --quiet shows it too.
    let quiet = ok(&[&args[..], &["--quiet"]].concat());
    assert!(
        quiet.contains("--scale-target standard scales it"),
        "{quiet}"
    );
    args.extend(["--scale-target", "standard"]);
    let scaled = ok(&args);
    assert!(!scaled.contains("note:"), "{scaled}");
    assert!(scaled.contains("validation loss ") && scaled.contains("(of the scaled target)"));
    assert!(
        r2_in(&scaled) > 0.95 && r2_in(&plain) < 0.5,
        "{plain}\n{scaled}"
    );
    // eval and predict work in the data's units.
    let eval = ok(&["eval", "--model", s(&model), "--data", s(&data)]);
    assert!(r2_in(&eval) > 0.95, "{eval}");
    let output = wgrad(&["predict", "--model", s(&model), "--input", s(&data)]);
    assert!(output.status.success(), "{}", text(&output));
    let predicted = String::from_utf8_lossy(&output.stdout);
    let values: Vec<f32> = predicted
        .lines()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let worst = values
        .iter()
        .zip(&prices)
        .map(|(p, t)| (p - t).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e6, "off by {worst} on prices spread over 2.2e6");
    // Quiet, a regression still ends with its figures in the data's units.
    args.push("--quiet");
    let quiet = ok(&args);
    assert!(r2_in(&quiet) > 0.95, "{quiet}");
    // A feature is not a target.
    fails(
        &[
            "eval",
            "--model",
            s(&model),
            "--data",
            s(&data),
            "--target",
            "a",
        ],
        "the target \"a\" is one of the model's feature columns",
    );
    // A constant target far from 0 gets the note too.
    let constant = dir.join("constant.csv");
    let rows: String = (0..20)
        .map(|i| format!("{i},{},2000000\n", i % 3))
        .collect();
    std::fs::write(&constant, format!("a,b,price\n{rows}")).unwrap();
    let out = ok(&[
        "train",
        "--data",
        s(&constant),
        "--task",
        "regression",
        "--epochs",
        "1",
        "--out",
        s(&model),
    ]);
    assert!(out.contains("note: the target's mean is 2.000e6"), "{out}");
    // A classification target has nothing to scale.
    fails(
        &["train", "--data", "xor", "--scale-target", "standard"],
        "--scale-target: scales a regression target; this one holds classes",
    );
}

#[test]
fn a_value_that_scales_past_f32_is_named() {
    let dir = temp_dir("scaled-overflow");
    // Column a spreads over about 4e-4, so 3e38 standardises far past f32's range.
    let data = dir.join("train.csv");
    std::fs::write(
        &data,
        "a,b,y\n0.001,1,0\n0.002,2,1\n0.0015,3,0\n0.0012,4,1\n",
    )
    .unwrap();
    let inputs = dir.join("inputs.csv");
    std::fs::write(&inputs, "b,a\n1,0.001\n2,3e38\n").unwrap();
    let model = dir.join("model");
    ok(&[
        "train",
        "--data",
        s(&data),
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-plots",
        "--out",
        s(&model),
    ]);
    let args = ["predict", "--model", s(&model), "--input", s(&inputs)];
    fails(&args, "inputs.csv: data row 2, column \"a\"");

    // Values that scale to finite inputs but overflow inside the network: named, not
    // written as NaN probabilities (nor counted as class 0 by eval).
    std::fs::write(&inputs, "b,a\n1,0.001\n3e38,0.002\n-3e38,0.001\n").unwrap();
    let args = [
        "predict",
        "--model",
        s(&model),
        "--input",
        s(&inputs),
        "--device",
        "cpu",
    ];
    fails(
        &args,
        "inputs.csv: data row 2 and 1 other gave the model outputs that are not finite",
    );
    let labelled = dir.join("labelled.csv");
    std::fs::write(&labelled, "a,b,y\n0.001,1,0\n0.002,3e38,1\n").unwrap();
    let args = [
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&labelled),
        "--device",
        "cpu",
    ];
    let output = fails(&args, "labelled.csv: data row 2 gave the model outputs");
    assert!(!text(&output).contains("accuracy"), "{}", text(&output));

    // A regression whose targets spread near f32's limit: finite outputs in scaled units
    // that pass it once scaled back are named, not written as infinities.
    let huge = dir.join("huge.csv");
    let rows: String = (0..8)
        .map(|i| format!("{i},{}\n", if i % 2 == 0 { "3.3e38" } else { "-3.3e38" }))
        .collect();
    std::fs::write(&huge, format!("a,y\n{rows}")).unwrap();
    let regression = dir.join("regression");
    ok(&[
        "train",
        "--data",
        s(&huge),
        "--task",
        "regression",
        "--scale-target",
        "standard",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-plots",
        "--out",
        s(&regression),
    ]);
    std::fs::write(&inputs, "a\n3\n1e6\n-1e6\n").unwrap();
    let output = predict_on_cpu(&regression, &inputs);
    assert!(!output.status.success(), "{}", text(&output));
    check_message(
        &["predict"],
        &output,
        "gave predictions beyond the range of 32-bit floats once scaled back to the target's \
         units; no predictions were written",
    );
}

/// A model larger than the memory the process may have is an error, not an abort: here
/// 400M parameters (22.41 GB with their gradients, optimizer state and copies) under a 2 GB
/// address-space limit.
#[test]
fn a_model_too_large_for_memory_is_an_error() {
    let dir = temp_dir("too-large");
    let script = format!(
        "ulimit -v 2000000 && exec {} train --data xor --layers 2,20000,20000,2 --epochs 1 \
         --device cpu --no-plots --out {}",
        env!("CARGO_BIN_EXE_wgrad"),
        s(&dir)
    );
    let output = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    check_message(
        &["train", "(under ulimit -v)"],
        &output,
        "the model's parameters, gradients, optimizer state and checkpoints need 22.41 GB",
    );
}

/// `wgrad ARGS` run from directory `cwd`; its output, after checking it succeeded.
fn ok_in(cwd: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the wgrad binary runs");
    assert!(
        output.status.success(),
        "wgrad {args:?} in {cwd:?} failed:\n{}",
        text(&output)
    );
    text(&output)
}

/// The loss of epoch `epoch` in a run directory's history.csv, as written.
fn history_loss(run: &Path, epoch: usize) -> String {
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    let line = history.lines().nth(epoch).unwrap();
    line.split(',').nth(1).unwrap().to_string()
}

/// A resumed run finds its training file from any directory and its columns by name, takes
/// options given again with their saved values, and with nothing left to train changes
/// nothing.
#[test]
fn resume_finds_its_data_by_path_and_column_name() {
    let dir = temp_dir("resume-data");
    let mut csv = String::from("x0,x1,label\n");
    for i in 0..150 {
        let (a, b) = (
            ((i * 37) % 101) as f32 / 50.0 - 1.0,
            ((i * 53) % 97) as f32 / 48.0 - 1.0,
        );
        csv += &format!("{a},{b},{}\n", if a * b > 0.0 { "same" } else { "other" });
    }
    std::fs::write(dir.join("train.csv"), &csv).unwrap();
    let common = ["--device", "cpu", "--no-plots", "--quiet"];
    let run = |out: &str, epochs: &str| {
        let mut args = vec![
            "train",
            "--data",
            "train.csv",
            "--epochs",
            epochs,
            "--out",
            out,
        ];
        args.extend(common);
        ok_in(&dir, &args);
    };
    run("whole", "4");
    run("resumed", "2");
    // The same rows with the columns in another order.
    let mut reordered = String::from("label,x1,x0\n");
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        reordered += &format!("{},{},{}\n", f[2], f[1], f[0]);
    }
    std::fs::write(dir.join("train.csv"), reordered).unwrap();
    let resumed = dir.join("resumed");
    let elsewhere = std::env::temp_dir();
    let data = dir.join("train.csv");
    let mut args = vec!["train", "--resume", s(&resumed), "--epochs", "4", "--data"];
    args.extend([s(&data), "--seed", "0", "--out", s(&resumed)]);
    args.extend(common);
    let out = ok_in(&elsewhere, &args);
    assert!(!out.contains("has changed"), "the same rows: {out}");
    assert!(
        out.contains("2 epochs (3–4) in "),
        "this run's epochs: {out}"
    );
    assert_eq!(
        history_loss(&resumed, 4),
        history_loss(&dir.join("whole"), 4)
    );

    let model = resumed.join("model.safetensors");
    let before = std::fs::metadata(&model).unwrap().modified().unwrap();
    let out = ok(&[
        "train",
        "--resume",
        s(&resumed),
        "--epochs",
        "3",
        "--device",
        "cpu",
    ]);
    assert!(
        out.contains("has trained 4 epochs") && out.contains("nothing to train"),
        "{out}"
    );
    assert_eq!(
        std::fs::metadata(&model).unwrap().modified().unwrap(),
        before
    );

    // Fewer rows than the run began with: it goes on, and says the data changed.
    let fewer: String = csv
        .lines()
        .take(101)
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(&data, fewer).unwrap();
    let mut args = vec!["train", "--resume", s(&resumed), "--epochs", "5"];
    args.extend(common);
    let out = ok(&args);
    assert!(
        out.contains("train.csv has changed since this run began (150 rows then, 100 now)"),
        "{out}"
    );
}

#[test]
fn devices_lists_the_adapters() {
    let out = ok(&["devices"]);
    if std::env::var("WGRAD_SKIP_GPU").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED adapter check of devices_lists_the_adapters: WGRAD_SKIP_GPU=1 is set");
        return;
    }
    assert!(
        out.contains("| Vulkan |") || out.contains("| Metal |") || out.contains("| Dx12 |"),
        "no adapter listed:\n{out}"
    );
}

#[test]
fn bad_options_are_clear_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["train", "--data", "cifar"], "unknown data set"),
        (
            &["train", "--data", "xor", "--layers", "3,4,1"],
            "the data has 2 inputs",
        ),
        (
            &["train", "--data", "xor", "--layers", "2,x,1"],
            "'x' is not a layer width",
        ),
        (
            &["train", "--data", "xor", "--layers", "2-8-1"],
            "separated by commas",
        ),
        (
            &["train", "--data", "xor", "--schedule", "step:0:0.5"],
            "every",
        ),
        (
            &["train", "--data", "csv:/no/such/file.csv"],
            "/no/such/file.csv",
        ),
        (
            &["eval", "--model", "/no/such/model", "--data", "xor"],
            "/no/such/model",
        ),
        (&["train", "--data", "xor", "--epochs", "0"], "at least 1"),
        (
            &[
                "train",
                "--data",
                "xor",
                "--optimizer",
                "nesterov",
                "--momentum",
                "0",
            ],
            "--momentum: nesterov needs a momentum > 0",
        ),
        // Numbers that 32-bit floats would make 0 or infinite are named as typed.
        (
            &["train", "--data", "xor", "--lr", "1e-50"],
            "invalid value '1e-50' for '--lr <LR>': 1e-50 is too small for a 32-bit float",
        ),
        (
            &["train", "--data", "xor", "--clip-norm", "1e39"],
            "1e39 is beyond the range of 32-bit floats",
        ),
        (
            &["train", "--data", "xor", "--dropout", "half"],
            "invalid value 'half' for '--dropout <DROPOUT>': \"half\" is not a number",
        ),
        (
            &["train", "--data", "xor", "--epochs", "-1"],
            "invalid value '-1' for '--epochs <EPOCHS>'",
        ),
        (
            &["train", "--data", "regression", "--loss", "bce"],
            "--loss: cross-entropy takes classes or probabilities in [0, 1], and the target of \
             regression is a regression target from -0.9",
        ),
        (
            &[
                "train",
                "--data",
                "regression",
                "--loss",
                "bce",
                "--scale-target",
                "standard",
            ],
            "--loss: cross-entropy takes targets in [0, 1], and --scale-target standard moves \
             them out of it",
        ),
        (
            &["train", "--data", "xor", "--categorical", "x0"],
            "--categorical: reads a CSV file's columns as categories; xor is not one",
        ),
        (
            &["train", "--data", "xor", "--checkpoint-every", "0"],
            "--checkpoint-every: must be at least 1 epoch, got 0",
        ),
        (
            &["train", "--data", "xor", "--checkpoint-every", "5 min"],
            "--checkpoint-every: expected a number of epochs (e.g. 5) or a time (e.g. 500ms, \
             30s, 10m, 2h), got '5 min'",
        ),
        // Negative numbers are values (and then out of range), not options.
        (
            &["train", "--data", "xor", "--lr", "-1"],
            "--lr: must be a finite number > 0, got -1",
        ),
        (
            &["train", "--data", "xor", "--dropout", "-0.1"],
            "--dropout: the rate must be in [0, 1), got -0.1",
        ),
        (
            &["train", "--data", "xor", "--dropout", "1"],
            "--dropout: the rate must be in [0, 1), got 1",
        ),
        (
            &["train", "--data", "xor", "--l1", "-1"],
            "--l1: must be finite and ≥ 0, got -1",
        ),
        (
            &["train", "--data", "xor", "--l2", "nan"],
            "--l2: must be finite and ≥ 0, got NaN",
        ),
        (
            &["train", "--data", "xor", "--layers", "2,0,1"],
            "--layers: width number 2 in '2,0,1' is 0",
        ),
        (
            &[
                "train",
                "--data",
                "xor",
                "--optimizer",
                "momentum",
                "--momentum",
                "1.5",
            ],
            "--momentum: momentum must be in [0, 1), got 1.5",
        ),
        (
            &["train", "--data", "xor", "--early-stopping", "0"],
            "--early-stopping: early stopping patience must be at least 1 epoch",
        ),
        (
            &["train", "--data", "xor", "--schedule", "cosine:0.1"],
            "--schedule: cosine:0.1 anneals up to 0.1 from the learning rate 0.001",
        ),
        (
            &["--device", "cpu", "bench", "--devices", "gpu"],
            "--device cpu and --devices gpu disagree",
        ),
        (
            &["train", "--data", "xor", "--validation-split", "1"],
            "--validation-split: fraction 1 is not in (0, 1)",
        ),
        (
            &[
                "train",
                "--data",
                "xor",
                "--layers",
                "2,1",
                "--dropout",
                "0.2",
            ],
            "has none",
        ),
        (
            &["train", "--data", "moons", "--target", "y"],
            "--target: picks a CSV file's target column; moons has its own labels",
        ),
        (
            &[
                "train",
                "--data",
                "xor",
                "--optimizer",
                "adam",
                "--momentum",
                "0.5",
            ],
            "--momentum: applies to sgd, momentum and nesterov, not adam",
        ),
        (
            &["train", "--data", "xor", "--monitor", "loss"],
            "--monitor: chooses what --early-stopping watches",
        ),
        (
            &[
                "train",
                "--data",
                "xor",
                "--early-stopping",
                "2",
                "--monitor",
                "val_loss",
            ],
            "--monitor: val_loss needs validation data: give --validation-split F",
        ),
        (
            &["bench", "--devices", "cpu", "--backend", "vulkan"],
            "--backend and --adapter pick the GPU, and --devices cpu times only the CPU",
        ),
        (
            &["train", "--data", "xor", "--fill-missing", "mean"],
            "--fill-missing: fills a CSV file's missing values; xor is not one",
        ),
        (
            &["train", "--data", "blobs", "--task", "regression"],
            "--task: says how to read a CSV file's target; blobs is not one",
        ),
        (
            &["train", "--data", "xor", "--backend", "foo"],
            "invalid setting: --backend: unknown GPU backend 'foo'",
        ),
        // Bad training settings stop the run before it starts, not at its first step.
        (
            &["train", "--data", "xor", "--batch-size", "0"],
            "--batch-size: must be at least 1",
        ),
        (
            &["train", "--data", "xor", "--clip-norm", "-1"],
            "--clip-norm: must be finite and > 0",
        ),
    ];
    for &(args, expected) in cases {
        let output = fails(args, expected);
        assert!(!text(&output).contains("training "), "{}", text(&output));
    }
}

/// Runs `wgrad args`, checks that it fails with a message mentioning `expected` (and no
/// panic), and returns its output.
fn fails(args: &[&str], expected: &str) -> Output {
    let output = wgrad(args);
    assert!(!output.status.success(), "wgrad {args:?} succeeded");
    check_message(args, &output, expected);
    output
}

/// The output of a failed `wgrad args` mentions `expected` and is not a panic.
fn check_message(args: &[&str], output: &Output, expected: &str) {
    let message = text(output);
    assert!(
        message.contains(expected),
        "wgrad {args:?}: {message:?} does not mention {expected:?}"
    );
    assert!(
        !message.contains("panicked"),
        "wgrad {args:?} panicked: {message}"
    );
}

/// Paths that cannot hold a model: `--out` naming a file stops the run before its first
/// epoch (not at its first checkpoint, after the work); `--model` or `--resume` naming a
/// directory with no model or checkpoint says so.
#[test]
fn output_and_model_paths_that_are_not_models_are_clear_errors() {
    let dir = temp_dir("not-models");
    let file = dir.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let args = [
        "train",
        "--data",
        "xor",
        "--device",
        "cpu",
        "--out",
        s(&file),
    ];
    let output = fails(&args, "--out names a file");
    assert!(
        !text(&output).contains("epoch 1"),
        "trained before failing: {}",
        text(&output)
    );
    for command in ["summary", "eval"] {
        let mut args = vec![command, "--model", s(&dir)];
        if command == "eval" {
            args.extend(["--data", "xor"]);
        }
        fails(&args, "no saved model here");
    }
    let args = ["train", "--resume", s(&dir)];
    fails(&args, "no checkpoint here");
    // A directory the run cannot lock is named, with the cause.
    let locked = dir.join("locked");
    std::fs::create_dir_all(locked.join(".lock")).unwrap();
    let args = [
        "train",
        "--data",
        "xor",
        "--device",
        "cpu",
        "--out",
        s(&locked),
    ];
    fails(
        &args,
        "the run cannot write into this directory (its lock file .lock is not a regular file)",
    );
    // A FIFO there is refused, not opened (which would wait for a reader forever).
    let fifo = dir.join("fifo-lock");
    std::fs::create_dir_all(&fifo).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(fifo.join(".lock"))
            .status()
            .unwrap()
            .success()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args([
            "train",
            "--data",
            "xor",
            "--device",
            "cpu",
            "--out",
            s(&fifo),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("train hung on a FIFO .lock");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let message = text(&child.wait_with_output().unwrap());
    assert!(
        message.contains("its lock file .lock is not a regular file"),
        "{message}"
    );
}

/// Starts a long training run into `dir` (stderr to `stderr`) and returns it once it has
/// written three checkpoints.
fn train_until_checkpoints(dir: &Path, stderr: Stdio) -> std::process::Child {
    let args = [
        "train",
        "--data",
        "spirals",
        "--layers",
        "2,256,256,3",
        "--epochs",
        "400",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--quiet",
        "--no-plots",
        // Every epoch's checkpoint: the run is stopped after a few.
        "--checkpoint-every",
        "1",
        "--out",
        s(dir),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let history = std::fs::read_to_string(dir.join("history.csv")).unwrap_or_default();
        if history.lines().count() > 3 {
            return child;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint after 2 minutes"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "training finished before it could be stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctrl_c_says_which_checkpoint_the_run_left_and_how_to_resume_it() {
    let dir = temp_dir("interrupt");
    let child = train_until_checkpoints(&dir, Stdio::piped());
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(sent.success());
    let output = child.wait_with_output().unwrap();
    let message = text(&output);
    assert_eq!(output.status.code(), Some(130), "{message}");
    let said = format!("{} holds the checkpoint of epoch ", s(&dir));
    let epoch: usize = message
        .split(&said)
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no checkpoint named in {message:?}"));
    assert!(
        message.contains(&format!("`wgrad train --resume {}` continues", s(&dir))),
        "{message}"
    );
    // The checkpoint is the one the message names.
    let more = (epoch + 1).to_string();
    let resumed = ok(&["train", "--resume", s(&dir), "--epochs", &more]);
    assert!(
        resumed.contains(&format!("resuming after epoch {epoch} ")),
        "{resumed}"
    );
}

#[test]
fn gpu_settings_in_the_environment_name_themselves_and_leave_cpu_runs_alone() {
    let dir = temp_dir("gpu-env");
    let train = |env: (&str, &str), device: &str| {
        Command::new(env!("CARGO_BIN_EXE_wgrad"))
            .args(["train", "--data", "xor", "--epochs", "1", "--no-plots"])
            .args(["--device", device, "--out", s(&dir)])
            .env(env.0, env.1)
            .env("NODEVICE_SELECT", "1")
            .output()
            .unwrap()
    };
    // A run on the CPU does not read them.
    for env in [("WGRAD_BACKEND", "nonsense"), ("WGRAD_ADAPTER", "nonsense")] {
        let output = train(env, "cpu");
        assert!(output.status.success(), "{env:?}: {}", text(&output));
    }
    let output = train(("WGRAD_BACKEND", "nonsense"), "gpu");
    assert!(
        text(&output).contains("invalid setting: WGRAD_BACKEND: unknown GPU backend 'nonsense'"),
        "{}",
        text(&output)
    );
    if common::skip_gpu("gpu_settings_in_the_environment_name_themselves") {
        return;
    }
    // Empty is unset.
    let output = train(("WGRAD_BACKEND", ""), "gpu");
    assert!(output.status.success(), "{}", text(&output));
    // An API without adapters here: the variable is named, and the adapters there are.
    let output = train(("WGRAD_BACKEND", "metal"), "gpu");
    let message = text(&output);
    assert!(
        message.contains("no GPU adapter found on Metal (chosen by WGRAD_BACKEND=metal)")
            && message.contains("(adapters present: ")
            && message.contains("Vulkan"),
        "{message}"
    );
}

#[test]
fn an_output_directory_not_in_utf8_is_refused_before_training() {
    use std::os::unix::ffi::OsStrExt;
    let dir = temp_dir("non-utf8");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(std::ffi::OsStr::from_bytes(b"bad\xffname"));
    let output = Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args(["train", "--data", "xor", "--epochs", "2", "--device", "cpu"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let message = text(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(message.contains("is not valid UTF-8"), "{message}");
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn sigterm_lets_the_epoch_in_progress_end_to_save_it_and_a_second_stops_at_once() {
    use std::io::BufRead;
    for signals in [1, 2] {
        let dir = temp_dir(&format!("sigterm-{signals}"));
        // Epochs of about a second, and no checkpoint due before the signals.
        let mut child = Command::new(env!("CARGO_BIN_EXE_wgrad"))
            .args([
                "train",
                "--data",
                "mnist",
                "--layers",
                "784,64,10",
                "--epochs",
                "100",
            ])
            .args([
                "--checkpoint-every",
                "1000",
                "--device",
                "cpu",
                "--no-plots",
            ])
            .args(["--out", s(&dir)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The epochs are shown on standard error, as they end.
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let trained = loop {
            let line = lines.next().expect("training shows its epochs").unwrap();
            if line.starts_with("epoch 2/100") {
                break 2;
            }
        };
        for _ in 0..signals {
            let pid = child.id().to_string();
            assert!(
                Command::new("kill")
                    .args(["-TERM", &pid])
                    .status()
                    .unwrap()
                    .success()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let message: Vec<String> = lines.map(Result::unwrap).collect();
        let message = message.join("\n");
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "{message}");
        assert!(
            message
                .contains("stopping when the epoch in progress ends, to save it with epochs 1–2"),
            "{message}"
        );
        if signals == 1 {
            // The epochs trained and the one in progress, saved.
            let epoch = number_after(&message, "holds the checkpoint of epoch ");
            assert!(epoch > trained, "{message}");
            let (_, _, progress) = wgrad::io::load_checkpoint(&dir, wgrad::Device::Cpu).unwrap();
            assert_eq!(progress.epochs_done, epoch);
        } else {
            assert!(
                message.contains("interrupted before the first checkpoint; nothing was saved"),
                "{message}"
            );
        }
    }
}

#[test]
fn ctrl_c_saves_the_epochs_trained_since_the_last_checkpoint() {
    let dir = temp_dir("interrupt-unsaved");
    // A finished run with its plots, which the interrupted run below replaces: they go with
    // its checkpoint, so that none shows the old run beside the new one's checkpoint.
    ok(&[
        "train",
        "--data",
        "xor",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--out",
        s(&dir),
    ]);
    assert!(dir.join("history.png").exists() && dir.join("boundary.png").exists());
    // Thousands of epochs a second and no checkpoint due: Ctrl-C finds every epoch unsaved.
    let child = Command::new(env!("CARGO_BIN_EXE_wgrad"))
        .args([
            "train",
            "--data",
            "xor",
            "--epochs",
            "100000000",
            "--checkpoint-every",
            "100000000",
            "--device",
            "cpu",
            "--quiet",
            "--no-plots",
            "--out",
            s(&dir),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let output = child.wait_with_output().unwrap();
    let message = text(&output);
    assert_eq!(output.status.code(), Some(130), "{message}");
    let epoch = number_after(&message, "holds the checkpoint of epoch ");
    assert!(epoch > 0, "{message}");
    let (_, _, progress) = wgrad::io::load_checkpoint(&dir, wgrad::Device::Cpu).unwrap();
    assert_eq!(progress.epochs_done, epoch, "{message}");
    assert_eq!(progress.history.epochs.len(), epoch);
    let history = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    assert_eq!(
        history.lines().count(),
        epoch + 1,
        "a header and a row per epoch"
    );
    assert!(!dir.join("history.png").exists() && !dir.join("boundary.png").exists());
}

#[test]
fn a_killed_run_resumes_from_its_last_checkpoint() {
    let dir = temp_dir("resume");
    let mut child = train_until_checkpoints(&dir, Stdio::null());
    // Killed below (SIGKILL) with a few checkpoints written, mid-epoch or mid-write.
    // While it runs, a second run into its directory is refused; once it is killed, its lock
    // is gone with it (the resume below takes it).
    let second = [
        "train",
        "--data",
        "xor",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        s(&dir),
    ];
    fails(&second, "another wgrad run is writing to this directory");
    child.kill().unwrap();
    child.wait().unwrap();
    let out = ok(&[
        "train",
        "--resume",
        s(&dir),
        "--epochs",
        "12",
        "--device",
        "cpu",
    ]);
    // This run's epochs, up to the 12th.
    assert!(out.contains("–12) in "), "{out}");
    let history = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    let epochs: Vec<usize> = history
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        epochs,
        (1..=12).collect::<Vec<_>>(),
        "every epoch once, in order"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    ok(&["summary", "--model", s(&dir)]);
}

/// The figure of a `wgrad bench` row whose first column starts with `name`.
fn bench_figure(table: &str, name: &str) -> f64 {
    let line = table
        .lines()
        .find(|line| line.starts_with(name))
        .unwrap_or_else(|| panic!("no row '{name}' in:\n{table}"));
    line[name.len()..]
        .split_whitespace()
        .find_map(|word| word.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no figure in '{line}'"))
}

#[test]
fn bench_times_the_standard_set_and_the_scaling_on_each_device() {
    let mut devices = vec!["cpu"];
    if !wgrad::gpu::policy::skip_requested("the GPU part of the bench test") {
        devices.push("gpu");
    }
    for device in devices {
        // --device picks the one device as --devices does.
        let flag = if device == "cpu" {
            "--device"
        } else {
            "--devices"
        };
        let mut args = vec!["bench", "--quick", flag, device];
        if device == "gpu" {
            args.extend(["--adapter", "software"]);
        }
        let table = ok(&args);
        if device == "cpu" {
            let rows = table.lines().filter(|line| line.starts_with('('));
            assert!(rows.clone().all(|row| row.ends_with("CPU")), "{table}");
            assert!(rows.count() >= 4, "{table}");
        }
        for row in [
            "(a) matmul 1024³",
            "(b) 784-128-10 adam",
            "(c) 784-800-10 momentum",
            "(e) 2-16-1 adam",
        ] {
            assert!(bench_figure(&table, row) > 0.0, "{device}: {row}\n{table}");
        }
        args.push("--scaling");
        let scaling = ok(&args);
        for rows in [3200, 6400, 12800] {
            let seconds = bench_figure(&scaling, &format!("(b) {rows} samples x 3 epochs"));
            assert!(seconds > 0.0, "{device}:\n{scaling}");
        }
        let first = bench_figure(&scaling, "memory after epoch 1 of 20");
        let last = bench_figure(&scaling, "memory after epoch 20 of 20");
        assert!(first > 0.0 && last > 0.0, "{device}:\n{scaling}");
    }
}

/// The number after `before` in `text`.
fn number_after(text: &str, before: &str) -> usize {
    let start = text
        .find(before)
        .unwrap_or_else(|| panic!("no '{before}' in {text}"))
        + before.len();
    text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after '{before}' in {text}"))
}

#[test]
fn a_diverging_run_fails_naming_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = temp_dir("diverge");
    // y = x0, fitted with SGD at a learning rate far past stability: the loss overflows in
    // epoch 2 or later.
    let mut csv = String::from("x0,x1,y\n");
    for i in 0..120 {
        let (a, b) = (
            ((i * 37) % 101) as f32 / 50.0 - 1.0,
            ((i * 53) % 97) as f32 / 48.0 - 1.0,
        );
        csv += &format!("{a},{b},{a}\n");
    }
    let data = dir.join("train.csv");
    std::fs::write(&data, &csv).unwrap();
    let data_spec = format!("csv:{}", s(&data));
    let model = dir.join("model");
    let output = wgrad(&[
        "train",
        "--data",
        &data_spec,
        "--task",
        "regression",
        "--layers",
        "2,16,1",
        "--activation",
        "tanh",
        "--output-activation",
        "linear",
        "--optimizer",
        "sgd",
        "--lr",
        "3",
        "--batch-size",
        "16",
        "--scale",
        "none",
        "--epochs",
        "20",
        "--no-plots",
        "--device",
        "cpu",
        // No checkpoint is due before the divergence: the run writes the last good epoch's
        // as it stops.
        "--checkpoint-every",
        "100000",
        "--out",
        s(&model),
    ]);
    let message = text(&output);
    assert!(
        !output.status.success(),
        "a diverging run succeeded:\n{message}"
    );
    let epoch = number_after(&message, "training diverged at epoch ");
    let step = number_after(&message, &format!("at epoch {epoch}, step "));
    let epoch_step = number_after(&message, &format!("step {step} (step "));
    // 120 rows in batches of 16: 8 steps per epoch.
    assert!(epoch >= 2 && (1..=8).contains(&epoch_step), "{message}");
    assert_eq!(step, (epoch - 1) * 8 + epoch_step, "{message}");
    assert!(message.contains("loss is"), "{message}");
    let kept = format!(
        "the last checkpoint (epoch {}, in {}) is intact",
        epoch - 1,
        s(&model)
    );
    assert!(message.contains(&kept), "{message}");
    assert!(
        message.contains("Lower --lr or clip gradients with --clip-norm"),
        "{message}"
    );

    // The directory holds the last good epoch, finite, and loads both ways.
    let (saved, _, progress) = wgrad::io::load_checkpoint(&model, wgrad::Device::Cpu).unwrap();
    assert_eq!(progress.epochs_done, epoch - 1);
    assert_eq!(saved.steps(), (epoch as u64 - 1) * 8);
    assert!(saved.params().unwrap().iter().all(|v| v.is_finite()));
    let eval = ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        &data_spec,
        "--device",
        "cpu",
    ]);
    assert!(eval.contains("loss"), "{eval}");
    // The kept checkpoint resumes with a learning rate and clipping that do not diverge; what
    // made the run (here its layers and data) cannot change on resuming.
    let resumed = ok(&[
        "train",
        "--resume",
        s(&model),
        "--lr",
        "0.05",
        "--clip-norm",
        "1",
        "--quiet",
    ]);
    assert!(resumed.contains("–20) in "), "{resumed}");
    let history = std::fs::read_to_string(model.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 1 + 20, "{history}");
    let args = [
        "train",
        "--resume",
        s(&model),
        "--layers",
        "2,8,1",
        "--data",
        "xor",
    ];
    fails(&args, "--data, --layers cannot change");

    // Predictions of a regression target chosen by default (the last column) are headed by
    // its name.
    let output = wgrad(&["predict", "--model", s(&model), "--input", s(&data)]);
    assert!(output.status.success(), "{}", text(&output));
    let predicted = String::from_utf8_lossy(&output.stdout);
    let mut lines = predicted.lines();
    assert_eq!(lines.next(), Some("y"), "{predicted}");
    let values: Vec<f32> = lines.map(|line| line.parse().unwrap()).collect();
    assert_eq!(values.len(), 120, "{predicted}");
    assert!(values.iter().all(|v| v.is_finite()), "{predicted}");

    // Device options before the command apply to it (this adapter name matches nothing);
    // given before and after, they are an error.
    for (args, expected) in [
        (
            &[
                "--device",
                "gpu",
                "--adapter",
                "no-such-adapter",
                "eval",
                "--model",
                s(&model),
                "--data",
                &data_spec,
            ][..],
            "no-such-adapter",
        ),
        (
            &[
                "--device",
                "gpu",
                "eval",
                "--device",
                "cpu",
                "--model",
                s(&model),
                "--data",
                &data_spec,
            ],
            "both before and after the command",
        ),
    ] {
        fails(args, expected);
    }

    // A first run that diverges before any checkpoint leaves no directory behind.
    let fresh = dir.join("fresh");
    let mut args = vec![
        "train",
        "--data",
        "regression",
        "--optimizer",
        "sgd",
        "--lr",
        "1e6",
    ];
    args.extend(["--device", "cpu", "--out", s(&fresh)]);
    fails(
        &args,
        "no epoch ended with finite weights, so nothing of this run was saved",
    );
    assert!(!fresh.exists());
}

#[test]
fn several_targets_are_a_regression_with_one_output_each() {
    let dir = temp_dir("targets");
    // Two targets of different scales from the same inputs.
    let mut csv = String::from("a,b,lat,price\n");
    for i in 0..300 {
        let (a, b) = (
            ((i * 37) % 101) as f32 / 50.0 - 1.0,
            ((i * 53) % 97) as f32 / 48.0 - 1.0,
        );
        csv += &format!(
            "{a},{b},{},{}\n",
            45.0 + 0.5 * (a - b),
            3e5 + 2e4 * (a + b * b)
        );
    }
    let data = dir.join("homes.csv");
    std::fs::write(&data, &csv).unwrap();
    let model = dir.join("model");
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--target",
        "lat,price",
        "--epochs",
        "60",
    ];
    args.extend([
        "--scale-target",
        "standard",
        "--device",
        "cpu",
        "--no-plots",
    ]);
    args.extend(["--out", s(&model)]);
    let out = ok(&args);
    assert!(out.contains("training 2-128-2 on homes"), "{out}");
    assert!(out.contains("regression of \"lat\", \"price\")"), "{out}");
    let eval = ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--device",
        "cpu",
    ]);
    assert!(r2_in(&eval) > 0.95, "{eval}");
    assert!(eval.contains("R² per target: lat 0.9"), "{eval}");
    let input = dir.join("new.csv");
    std::fs::write(&input, "b,a\n0.5,0.25\n").unwrap();
    let predicted = String::from_utf8(predict_on_cpu(&model, &input).stdout).unwrap();
    let rows: Vec<&str> = predicted.lines().collect();
    assert_eq!(rows[0], "lat,price", "{predicted}");
    let values: Vec<f64> = rows[1].split(',').map(|v| v.parse().unwrap()).collect();
    assert!(
        (values[0] - 44.875).abs() < 0.1 && (values[1] - 3.1e5).abs() < 2e3,
        "{predicted}"
    );
    let summary = ok(&["summary", "--model", s(&model)]);
    assert!(summary.contains("Target columns: lat, price"), "{summary}");
    // The file's columns for the targets go in the model's order.
    fails(
        &[
            "eval",
            "--model",
            s(&model),
            "--data",
            s(&data),
            "--target",
            "price,lat",
        ],
        "--target: the model predicts 2 targets, lat, price, in this order",
    );
    // A validation file finds both targets by name; classes take one target.
    let validated = dir.join("validated");
    let mut args = args.clone();
    args.truncate(args.len() - 1);
    args.extend([s(&validated), "--validation-data", s(&data)]);
    assert!(ok(&args).contains("R² per target: lat "));
    fails(
        &[
            "train",
            "--data",
            s(&data),
            "--target",
            "lat,price",
            "--task",
            "classification",
        ],
        "classification takes one target column, and \"lat\", \"price\" are named",
    );
    // One target is saved as a name, as before several could be.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(validated.join("model.json")).unwrap())
            .unwrap();
    assert_eq!(json["target"], serde_json::json!(["lat", "price"]));
    ok(&[
        "train",
        "--data",
        s(&data),
        "--target",
        "price",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-plots",
        "--out",
        s(&validated),
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(validated.join("model.json")).unwrap())
            .unwrap();
    assert_eq!(json["target"], "price");
}

#[test]
fn unknown_categories_are_errors_or_none_of_them_as_asked() {
    let dir = temp_dir("unknown-categories");
    let mut csv = String::from("city,size,y\n");
    for i in 0..90 {
        let (city, effect) = [("Paris", 1.0), ("London", 2.0), ("Berlin", 3.0)][i % 3];
        let size = (i * 7 % 10) as f32 / 10.0;
        csv += &format!("{city},{size},{}\n", effect + size);
    }
    let data = dir.join("cities.csv");
    std::fs::write(&data, &csv).unwrap();
    let new = dir.join("new.csv");
    std::fs::write(&new, "city,size\nParis,0.5\nTokyo,0.5\n").unwrap();
    let train = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            s(&data),
            "--epochs",
            "20",
            "--device",
            "cpu",
        ];
        args.extend(["--no-plots", "--quiet", "--out", s(out)]);
        args.extend(extra);
        ok(&args);
    };
    let predict = |model: &Path, extra: &[&str]| {
        let mut args = vec![
            "predict",
            "--model",
            s(model),
            "--input",
            s(&new),
            "--device",
            "cpu",
        ];
        args.extend(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let strict = dir.join("strict");
    train(&strict, &[]);
    let args = predict(&strict, &[]);
    let message = text(&wgrad(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(
        message.contains("line 3, column \"city\": unknown category \"Tokyo\"")
            && message.contains("give `--unknown-categories ignore`"),
        "{message}"
    );
    // Asked at prediction, or kept from training: Tokyo is none of the cities.
    let args = predict(&strict, &["--unknown-categories", "ignore"]);
    let asked = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let lenient = dir.join("lenient");
    train(&lenient, &["--unknown-categories", "ignore"]);
    let args = predict(&lenient, &[]);
    let kept = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(kept.lines().count(), 3, "{kept}");
    assert_eq!(asked.lines().count(), 3, "{asked}");
    let summary = ok(&["summary", "--model", s(&lenient)]);
    assert!(
        summary.contains("city (Berlin | London | Paris; unknown: no category)"),
        "{summary}"
    );
    // And taken back at prediction.
    let args = predict(&lenient, &["--unknown-categories", "error"]);
    let message = text(&wgrad(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert!(message.contains("unknown category \"Tokyo\""), "{message}");
}

#[test]
fn columns_with_one_value_in_training_get_a_note() {
    let dir = temp_dir("constant");
    let mut csv = String::from("a,k,shop,b,y\n");
    for i in 0..30 {
        csv += &format!("{},5,north,{},{}\n", i % 7, i % 3, (i % 7) + 2 * (i % 3));
    }
    let data = dir.join("constant.csv");
    std::fs::write(&data, &csv).unwrap();
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--epochs",
        "1",
        "--device",
        "cpu",
    ];
    args.extend(["--task", "regression", "--no-plots", "--out", s(&dir)]);
    let out = ok(&args);
    assert!(
        out.contains("note: \"k\" (5), \"shop\" (\"north\") hold one value in every training row"),
        "{out}"
    );
    let out = ok(&[&args[..], &["--ignore", "k,shop"]].concat());
    assert!(!out.contains("one value in every training row"), "{out}");

    // Many are named up to 20, then counted.
    let header: Vec<String> = (0..25).map(|j| format!("c{j}")).collect();
    let mut csv = format!("a,{},y\n", header.join(","));
    for i in 0..10 {
        csv += &format!("{},{},{}\n", i % 7, vec!["1"; 25].join(","), i % 2);
    }
    std::fs::write(&data, &csv).unwrap();
    let out = ok(&args);
    assert!(
        out.contains("\"c19\" (1) and 5 more columns hold one value in every training row"),
        "{out}"
    );
    assert!(!out.contains("\"c20\""), "{out}");
}

#[test]
fn integer_codes_named_categorical_are_learnt_as_categories() {
    let dir = temp_dir("codes");
    // y = 2a − b + an effect per region, the regions coded 1–4 in no order of their effects.
    let effect = [0.0, 5.0, -5.0, 10.0];
    let write = |name: &str, rows: usize, shift: usize| {
        let mut csv = String::from("a,b,region,y\n");
        for i in shift..shift + rows {
            let (a, b) = (
                ((i * 37) % 101) as f32 / 50.0 - 1.0,
                ((i * 53) % 97) as f32 / 48.0 - 1.0,
            );
            let region = 1 + (i * 7 + i / 5) % 4;
            csv += &format!("{a},{b},{region},{}\n", 2.0 * a - b + effect[region - 1]);
        }
        let path = dir.join(name);
        std::fs::write(&path, csv).unwrap();
        path
    };
    let (train, test) = (write("train.csv", 400, 0), write("test.csv", 200, 1000));
    let r2 = |categorical: &[&str]| {
        let model = dir.join(format!("model{}", categorical.len()));
        let mut args = vec![
            "train",
            "--data",
            s(&train),
            "--epochs",
            "100",
            "--device",
            "cpu",
        ];
        args.extend(["--no-plots", "--quiet", "--out", s(&model)]);
        args.extend(categorical);
        ok(&args);
        let eval = ok(&[
            "eval",
            "--model",
            s(&model),
            "--data",
            s(&test),
            "--device",
            "cpu",
        ]);
        (r2_in(&eval), model)
    };
    let (as_numbers, _) = r2(&[]);
    let (as_categories, model) = r2(&["--categorical", "region"]);
    assert!(
        as_categories > 0.98 && as_categories > as_numbers + 0.05,
        "R² {as_categories} as categories, {as_numbers} as numbers"
    );
    let summary = ok(&["summary", "--model", s(&model)]);
    assert!(summary.contains("region (1 | 2 | 3 | 4)"), "{summary}");
}

#[test]
fn columns_of_words_train_as_categories_and_identifiers_can_be_ignored() {
    let dir = temp_dir("categories");
    // The class is set by the colour (a column of words) and the size together; an id and a
    // name column carry nothing.
    let mut csv = String::from("id,name,colour,size,label\n");
    for i in 0..240 {
        let colour = ["red", "green", "blue"][i % 3];
        let size = (i * 7 % 10) as f32 / 10.0;
        let label = if (colour == "red") ^ (size > 0.45) {
            "keep"
        } else {
            "drop"
        };
        csv += &format!("{i},item {i},{colour},{size},{label}\n");
    }
    let data = dir.join("items.csv");
    std::fs::write(&data, &csv).unwrap();
    let model = dir.join("model");
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--epochs",
        "60",
        "--batch-size",
        "16",
        "--lr",
        "0.01",
        "--device",
        "cpu",
        "--no-plots",
        "--quiet",
        "--out",
        s(&model),
    ];
    // The name column is refused as categories, with the way out.
    let output = wgrad(&args);
    assert!(!output.status.success());
    let message = text(&output);
    assert!(
        message.contains("every row of column \"name\"") && message.contains("--ignore name"),
        "{message}"
    );
    args.extend(["--ignore", "id,name"]);
    ok(&args);
    let summary = ok(&["summary", "--model", s(&model)]);
    assert!(
        summary.contains("Feature columns: colour (blue | green | red), size"),
        "{summary}"
    );
    assert!(
        summary.contains("(None, 4)"),
        "three categories and a number: {summary}"
    );

    let eval = ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--device",
        "cpu",
    ]);
    assert!(eval.contains("accuracy 100.00%"), "{eval}");
    // New rows, columns in another order, the ignored ones absent.
    let input = dir.join("new.csv");
    std::fs::write(
        &input,
        "size,colour\n0.9,red\n0.9,blue\n0.1,red\n0.1,green\n",
    )
    .unwrap();
    let output = predict_on_cpu(&model, &input);
    let predictions = String::from_utf8_lossy(&output.stdout);
    let classes: Vec<&str> = predictions
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().unwrap())
        .collect();
    assert_eq!(classes, ["drop", "keep", "keep", "drop"], "{predictions}");
    // An unseen category is named with its line.
    std::fs::write(&input, "size,colour\n0.9,red\n0.5,purple\n").unwrap();
    let output = predict_on_cpu(&model, &input);
    assert!(!output.status.success());
    let message = text(&output);
    assert!(
        message.contains("line 3, column \"colour\": unknown category \"purple\""),
        "{message}"
    );
    // Two one-hot inputs are not axes to draw a decision boundary over.
    let two = dir.join("two.csv");
    std::fs::write(&two, "colour,label\nred,a\nblue,b\nred,a\nblue,b\n").unwrap();
    let plotted = dir.join("plotted");
    ok(&[
        "train",
        "--data",
        s(&two),
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        s(&plotted),
    ]);
    assert!(plotted.join("history.png").exists());
    assert!(!plotted.join("boundary.png").exists());
    // --ignore is about CSV columns.
    let output = wgrad(&["train", "--data", "xor", "--ignore", "x0", "--no-plots"]);
    assert!(!output.status.success());
    assert!(text(&output).contains("--ignore"), "{}", text(&output));
}

#[test]
fn binary_cross_entropy_takes_one_sigmoid_unit_and_regression_squared_error() {
    let dir = temp_dir("default-outputs");
    let data = dir.join("two.csv");
    let mut csv = String::from("a,b,label\n");
    for i in 0..40 {
        let (a, b) = ((i % 9) as f32 - 4.0, (i % 5) as f32 - 2.0);
        csv += &format!("{a},{b},{}\n", if a + b > 0.0 { "M" } else { "B" });
    }
    std::fs::write(&data, &csv).unwrap();
    let model = dir.join("bce");
    let common = ["--epochs", "2", "--device", "cpu", "--no-plots", "--quiet"];
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--loss",
        "bce",
        "--out",
        s(&model),
    ];
    args.extend(common);
    ok(&args);
    let summary = ok(&["summary", "--model", s(&model)]);
    assert!(
        summary.contains("(None, 1)")
            && summary.contains("sigmoid")
            && summary.contains("Loss: bce"),
        "{summary}"
    );
    // A sigmoid output on values to predict keeps squared error.
    let model = dir.join("regression");
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--target",
        "a",
        "--task",
        "regression",
        "--output-activation",
        "sigmoid",
        "--out",
        s(&model),
    ];
    args.extend(common);
    ok(&args);
    let summary = ok(&["summary", "--model", s(&model)]);
    assert!(summary.contains("Loss: mse"), "{summary}");
    // ... and a standardised target, which a sigmoid cannot reach, gets a note.
    let mut scaled = args.clone();
    scaled.extend(["--scale-target", "standard"]);
    let out = ok(&scaled);
    assert!(
        out.contains("a sigmoid output lies in (0, 1), and a standardised target reaches past it"),
        "{out}"
    );

    // Binary cross-entropy on logits of two classes: one unit too; on three classes, one
    // sigmoid unit per class.
    let model = dir.join("logit");
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--loss",
        "bce",
        "--out",
        s(&model),
    ];
    args.extend(["--output-activation", "linear"]);
    args.extend(common);
    ok(&args);
    let summary = ok(&["summary", "--model", s(&model)]);
    assert!(summary.contains("(None, 1)"), "{summary}");
    let three = dir.join("three.csv");
    std::fs::write(&three, csv.replace(",M\n", ",M\n0,0,N\n")).unwrap();
    let model = dir.join("three");
    let mut args = vec![
        "train",
        "--data",
        s(&three),
        "--loss",
        "bce",
        "--out",
        s(&model),
    ];
    args.extend(common);
    ok(&args);
    let summary = ok(&["summary", "--model", s(&model)]);
    assert!(
        summary.contains("(None, 3)") && summary.contains("sigmoid"),
        "{summary}"
    );
}

#[test]
fn a_validation_file_is_found_again_on_resuming_and_its_changes_are_named() {
    let dir = temp_dir("resume-validation");
    let rows = |n: usize, shift: usize| {
        let mut csv = String::from("a,b,label\n");
        for i in 0..n {
            let (a, b) = (
                ((i + shift) * 37 % 101) as f32 / 50.0,
                (i * 53 % 97) as f32 / 48.0,
            );
            csv += &format!("{a},{b},{}\n", if a > b { "x" } else { "y" });
        }
        csv
    };
    std::fs::write(dir.join("train.csv"), rows(120, 0)).unwrap();
    std::fs::write(dir.join("valid.csv"), rows(40, 7)).unwrap();
    let common = ["--device", "cpu", "--no-plots", "--quiet"];
    let mut args = vec![
        "train",
        "--data",
        "train.csv",
        "--validation-data",
        "valid.csv",
        "--epochs",
        "2",
        "--out",
        "run",
    ];
    args.extend(common);
    ok_in(&dir, &args);
    // From another directory: the same validation file, by its absolute path.
    let run = dir.join("run");
    let mut args = vec!["train", "--resume", s(&run), "--epochs", "3"];
    args.extend(common);
    // Not quiet: the resumed rate is said.
    let loud: Vec<&str> = args.iter().copied().filter(|a| *a != "--quiet").collect();
    let out = ok_in(&std::env::temp_dir(), &loud);
    assert!(out.contains("on 40 samples"), "{out}");
    assert!(out.contains("at learning rate 1.000e-3"), "{out}");
    assert!(!out.contains("has changed"), "{out}");
    // The validation file changed, the training file did not: the note names the first.
    std::fs::write(dir.join("valid.csv"), rows(30, 7)).unwrap();
    let args = [&args[..3], &["--epochs", "4"], &common[..]].concat();
    let out = ok_in(&std::env::temp_dir(), &args);
    assert!(
        out.contains("valid.csv has changed since this run began (40 rows then, 30 now)"),
        "{out}"
    );
    assert!(!out.contains("train.csv has changed"), "{out}");
}

#[test]
fn a_target_far_from_zero_is_predicted_in_its_own_values() {
    let dir = temp_dir("target-offset");
    // ts = 1700000000 + 10·x: as 32-bit floats the targets would be 128 apart.
    let mut csv = String::from("x,ts\n");
    for i in 0..200 {
        let x = (i * 37 % 200) as f64 / 20.0 - 5.0;
        csv += &format!("{x},{}\n", 1_700_000_000.0 + 10.0 * x);
    }
    let data = dir.join("late.csv");
    std::fs::write(&data, &csv).unwrap();
    let model = dir.join("model");
    let mut args = vec!["train", "--data", s(&data), "--scale-target", "standard"];
    args.extend([
        "--epochs",
        "60",
        "--lr",
        "0.01",
        "--device",
        "cpu",
        "--no-plots",
    ]);
    args.extend(["--quiet", "--out", s(&model)]);
    let trained = ok(&args);
    // Nothing held out: the figures on the training data, R² of ts in its own units.
    assert!(
        trained.contains(
            "on the training data (200 samples; --validation-split F holds some out):\nMSE "
        ),
        "{trained}"
    );
    assert!(r2_in(&trained) > 0.99, "{trained}");
    let summary = ok(&["summary", "--model", s(&model)]);
    assert!(
        summary.contains("Target column: ts (less 1700000000)"),
        "{summary}"
    );
    let input = dir.join("new.csv");
    std::fs::write(&input, "x\n-2.5\n1.25\n").unwrap();
    let output = predict_on_cpu(&model, &input);
    let predictions = String::from_utf8_lossy(&output.stdout);
    let values: Vec<f64> = predictions
        .lines()
        .skip(1)
        .map(|line| line.parse().unwrap())
        .collect();
    // 1699999975 and 1700000012.5, to well within the 128 of a 32-bit float there.
    assert!((values[0] - 1_699_999_975.0).abs() < 2.0, "{predictions}");
    assert!((values[1] - 1_700_000_012.5).abs() < 2.0, "{predictions}");
}

#[test]
fn missing_values_are_filled_when_asked_in_training_and_prediction() {
    let dir = temp_dir("fill-missing");
    let mut csv = String::from("age,port,fare,label\n");
    for i in 0..60 {
        let age = if i % 7 == 3 {
            String::new()
        } else {
            (20 + i % 50).to_string()
        };
        let port = if i % 11 == 5 {
            ""
        } else {
            ["S", "C", "Q"][i % 3]
        };
        csv += &format!("{age},{port},{},{}\n", 5 + i % 40, ["x", "y"][i % 2]);
    }
    let data = dir.join("gaps.csv");
    std::fs::write(&data, &csv).unwrap();
    let model = dir.join("model");
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--epochs",
        "2",
        "--device",
        "cpu",
    ];
    args.extend(["--no-plots", "--quiet", "--out", s(&model)]);
    let output = wgrad(&args);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("--fill-missing mean|median"),
        "{}",
        text(&output)
    );
    args.extend(["--fill-missing", "median"]);
    ok(&args);
    let summary = ok(&["summary", "--model", s(&model)]);
    assert!(
        summary.contains("Feature columns: age (missing: 40), port (C | Q | S; missing: no category), fare (missing: 19.5)"),
        "{summary}"
    );
    let input = dir.join("new.csv");
    std::fs::write(&input, "age,port,fare\n,,12\nNA,S,\n").unwrap();
    let output = predict_on_cpu(&model, &input);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 3);
}

#[test]
fn inputs_prepared_otherwise_than_the_training_data_get_a_note() {
    let dir = temp_dir("input-range");
    // Six pixels in [0, 1], as the model learns them (no scaling, as for MNIST).
    let mut csv = String::from("p0,p1,p2,p3,p4,p5,label\n");
    for i in 0..40 {
        let pixels: Vec<f32> = (0..6)
            .map(|k| ((i * (2 * k + 1)) % 10) as f32 / 10.0)
            .collect();
        let light = pixels.iter().sum::<f32>() > 3.0;
        for p in &pixels {
            csv += &format!("{p},");
        }
        csv += &format!("{}\n", ["dark", "light"][usize::from(light)]);
    }
    let data = dir.join("pixels.csv");
    std::fs::write(&data, &csv).unwrap();
    let model = dir.join("model");
    let mut args = vec![
        "train",
        "--data",
        s(&data),
        "--scale",
        "none",
        "--epochs",
        "2",
    ];
    args.extend([
        "--device",
        "cpu",
        "--no-plots",
        "--quiet",
        "--out",
        s(&model),
    ]);
    ok(&args);
    let input = dir.join("same.csv");
    std::fs::write(
        &input,
        "p0,p1,p2,p3,p4,p5\n0.5,0.25,0,0.9,0.1,0.3\n0.9,0.1,0.2,0.4,0.6,0.8\n",
    )
    .unwrap();
    let output = predict_on_cpu(&model, &input);
    assert!(!text(&output).contains("outside"), "{}", text(&output));
    // The same pixels as bytes, 0–255: every column named by its training range and the new
    // one, in one line however many columns there are.
    std::fs::write(
        &input,
        "p0,p1,p2,p3,p4,p5\n128,64,0,230,26,77\n230,26,51,102,153,204\n",
    )
    .unwrap();
    let output = predict_on_cpu(&model, &input);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "6 of the model's 6 inputs lie outside their training ranges, p0 (here 128 to 230; \
             in training 0 to 0.9), p1 (here 26 to 64; in training 0 to 0.9), p2 (here 0 to 51; \
             in training 0 to 0.5) and 3 more: were they prepared as the training data was (the \
             same units; pixels in [0, 1], not 0–255)?"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// A CSV table of `rows` rows, `year,income,branch,spend`, drawn from one distribution by a
/// linear congruential generator seeded with `seed`; `income` divided by `divisor`.
fn incomes(seed: u64, rows: usize, divisor: f64, branch: u32) -> (String, Vec<f64>) {
    let mut state = seed;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let mut csv = String::from("year,income,branch,spend\n");
    let mut values = Vec::new();
    for _ in 0..rows {
        let year = 1990 + next(31) as i64;
        let income = 20_000.0 + 10.0 * next(18_001) as f64;
        let spend = 0.5 * (year - 2005) as f64 + income / 1e4 + next(100) as f64 / 100.0;
        csv += &format!("{year},{},{branch},{spend}\n", income / divisor);
        values.push(income);
    }
    (csv, values)
}

#[test]
fn a_column_in_other_units_is_named_with_both_ranges_in_the_data_units() {
    let dir = temp_dir("input-ranges");
    // One draw of 250 rows: 200 to train on, 50 held out (a fresh sample of the same kind,
    // 4 of whose incomes lie below the training ones).
    let (all, incomes_drawn) = incomes(8, 250, 1.0, 5);
    let lines: Vec<&str> = all.lines().collect();
    let (header, rows) = (lines[0], &lines[1..]);
    let table = |rows: &[&str]| format!("{header}\n{}\n", rows.join("\n"));
    let (train, held) = (dir.join("train.csv"), dir.join("held.csv"));
    std::fs::write(&train, table(&rows[..200])).unwrap();
    std::fs::write(&held, table(&rows[200..])).unwrap();
    let least = incomes_drawn[..200]
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let most = incomes_drawn[..200].iter().copied().fold(0.0, f64::max);
    let model = dir.join("model");
    let mut args = vec!["train", "--data", s(&train), "--target", "spend"];
    args.extend(["--validation-data", s(&held), "--epochs", "20"]);
    args.extend([
        "--device",
        "cpu",
        "--no-plots",
        "--quiet",
        "--out",
        s(&model),
    ]);
    // The held-out rows, as validation data or evaluated, get no note.
    let trained = ok(&args);
    assert!(!trained.contains("outside"), "{trained}");
    let evaluated = ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&held),
        "--device",
        "cpu",
    ]);
    assert!(!evaluated.contains("outside"), "{evaluated}");
    // Incomes in thousands (standardised, about -2.1: within the span of all inputs), and a
    // branch the training data never had.
    let (thousands, _) = incomes(11, 60, 1000.0, 7);
    let thousands = thousands.replacen("\n", "\n1995,20,7,0\n2015,200,7,0\n", 1);
    let input = dir.join("thousands.csv");
    std::fs::write(&input, thousands).unwrap();
    let expected = format!(
        "note: {}: 2 of the model's 3 inputs lie outside their training ranges, income (here \
         20 to 200; in training {least} to {most}) and branch (here 7; held only 5 in \
         training): were they prepared as the training data was",
        input.display()
    );
    let evaluated = ok(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&input),
        "--device",
        "cpu",
    ]);
    assert!(evaluated.contains(&expected), "{evaluated}");
    let output = predict_on_cpu(&model, &input);
    assert!(text(&output).contains(&expected), "{}", text(&output));
    // One row to predict: in thousands it is named; one of the kind trained on is not.
    for (divisor, named) in [(1000.0, true), (1.0, false)] {
        let (row, _) = incomes(8, 1, divisor, 5);
        let input = dir.join("one.csv");
        std::fs::write(&input, row).unwrap();
        let output = text(&predict_on_cpu(&model, &input));
        assert_eq!(output.contains("income (here "), named, "{output}");
    }
}

/// Names that hold the separators summary's lists use are quoted there, CSV-style.
#[test]
fn summary_quotes_names_holding_separators() {
    let dir = temp_dir("summary_quotes");
    let mut csv = String::from("\"height, cm\",shade,\"answer; final\"\n");
    for i in 0..40 {
        let height = 1.0 + (i * 37 % 40) as f32 / 40.0;
        let shade = if i % 3 == 0 { "dark (navy)" } else { "light" };
        let answer = if height > 1.5 { "\"yes, sure\"" } else { "no" };
        csv += &format!("{height},\"{shade}\",{answer}\n");
    }
    let data = dir.join("quoted.csv");
    std::fs::write(&data, &csv).unwrap();
    let model = dir.join("model");
    let data_arg = format!("csv:{}", s(&data));
    ok(&[
        "train",
        "--data",
        &data_arg,
        "--target",
        "answer; final",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--no-plots",
        "--quiet",
        "--out",
        s(&model),
    ]);
    let summary = ok(&["summary", "--model", s(&model)]);
    for line in [
        "Feature columns: \"height, cm\", shade (\"dark (navy)\" | light)\n",
        "Target column: \"answer; final\"\n",
        "Classes: no, \"yes, sure\"\n",
    ] {
        assert!(summary.contains(line), "{line:?} in {summary}");
    }
}
