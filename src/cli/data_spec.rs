//! `--data` specifications: `mnist`, `mnist:DIR`, `csv:PATH` (or a path ending in `.csv` or
//! `.tsv`), or a built-in synthetic set.

use crate::data::{self, CsvOptions, Dataset};
use crate::error::{Result, WgradError};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub enum DataSpec {
    /// The MNIST copy shipped in the repository (`None`) or the one in a directory.
    Mnist(Option<PathBuf>),
    Csv(PathBuf),
    Synthetic(String),
}

/// Training data and the held-out data the finished model is tested on.
pub struct Loaded {
    pub train: Dataset,
    pub test: Option<Dataset>,
}

impl DataSpec {
    pub fn parse(spec: &str) -> Result<DataSpec> {
        let bad = |why: String| WgradError::InvalidConfig(format!("--data {spec}: {why}"));
        let expected = format!(
            "expected mnist, mnist:DIR, csv:PATH (or a path ending in .csv or .tsv, gzipped or \
             not) or one of {}",
            data::SYNTHETIC_NAMES.join(", ")
        );
        let lower = spec.to_ascii_lowercase();
        let table_file = [".csv", ".tsv", ".csv.gz", ".tsv.gz"]
            .iter()
            .any(|ending| lower.ends_with(ending));
        match spec.split_once(':') {
            Some(("mnist", dir)) if !dir.is_empty() => Ok(DataSpec::Mnist(Some(dir.into()))),
            Some(("csv", path)) if !path.is_empty() => Ok(DataSpec::Csv(path.into())),
            Some((kind @ ("mnist" | "csv"), _)) => Err(bad(format!(
                "'{kind}:' needs a path after the colon (mnist:DIR or csv:PATH)"
            ))),
            _ if table_file => Ok(DataSpec::Csv(spec.into())),
            None if spec == "mnist" => Ok(DataSpec::Mnist(None)),
            None if data::SYNTHETIC_NAMES.contains(&spec) => {
                Ok(DataSpec::Synthetic(spec.to_string()))
            }
            _ if Path::new(spec).is_file() => Err(bad(format!(
                "unknown data set; for the file {spec}, write csv:{spec}"
            ))),
            _ if Path::new(spec).is_dir() => Err(bad(format!(
                "unknown data set; for MNIST files in the directory {spec}, write mnist:{spec}"
            ))),
            Some(_) => Err(bad(format!(
                "unknown data set ({expected}; only mnist and csv take a path after a colon)"
            ))),
            None => Err(bad(format!("unknown data set ({expected})"))),
        }
    }

    /// A short name for output directories and messages: a file's name without its
    /// extensions (`sales` for `sales.csv.gz`).
    pub fn name(&self) -> String {
        match self {
            DataSpec::Mnist(_) => "mnist".into(),
            DataSpec::Csv(path) => {
                let name = path.file_name().map(|n| n.to_string_lossy());
                let name = name.as_deref().unwrap_or("csv");
                let name = name.strip_suffix(".gz").unwrap_or(name);
                Path::new(name)
                    .file_stem()
                    .map_or("csv".into(), |s| s.to_string_lossy().into_owned())
            }
            DataSpec::Synthetic(name) => name.clone(),
        }
    }

    /// The specification with its path made absolute (from the current directory), so that
    /// it names the same files from anywhere.
    pub fn absolute(&self) -> Result<String> {
        let absolute = |path: &Path| {
            std::path::absolute(path)
                .map(|p| p.display().to_string())
                .map_err(|e| WgradError::io(path, e))
        };
        Ok(match self {
            DataSpec::Mnist(Some(dir)) => format!("mnist:{}", absolute(dir)?),
            DataSpec::Csv(path) => format!("csv:{}", absolute(path)?),
            DataSpec::Mnist(None) => "mnist".into(),
            DataSpec::Synthetic(name) => name.clone(),
        })
    }

    pub fn is_mnist(&self) -> bool {
        matches!(self, DataSpec::Mnist(_))
    }

    /// Loads the data. MNIST comes with its test set; a built-in set keeps a fifth of its
    /// points apart as a test set (XOR, all four points, is its own test); a CSV file has none,
    /// and is read as `csv` says.
    pub fn load_with(&self, csv: &CsvOptions, seed: u64) -> Result<Loaded> {
        match self {
            DataSpec::Mnist(dir) => {
                let sets = match dir {
                    Some(dir) => data::load_mnist_dir(dir)?,
                    None => data::load_mnist()?,
                };
                Ok(Loaded {
                    train: sets.train,
                    test: Some(sets.test),
                })
            }
            DataSpec::Csv(path) => Ok(Loaded {
                train: data::load_csv_with(path, csv)?,
                test: None,
            }),
            DataSpec::Synthetic(name) => {
                let all = data::synthetic(name, seed).expect("parse accepts only known names");
                if name == "xor" {
                    return Ok(Loaded {
                        test: Some(all.clone()),
                        train: all,
                    });
                }
                let (train, test) = all.split(0.2, seed)?;
                Ok(Loaded {
                    train,
                    test: Some(test),
                })
            }
        }
    }

    pub fn load(&self, seed: u64) -> Result<Loaded> {
        self.load_with(&CsvOptions::default(), seed)
    }
}

#[cfg(test)]
mod tests {
    use super::DataSpec;

    #[test]
    fn parses_every_form_and_rejects_the_rest() {
        assert_eq!(DataSpec::parse("mnist").unwrap(), DataSpec::Mnist(None));
        assert_eq!(
            DataSpec::parse("mnist:/tmp/m").unwrap(),
            DataSpec::Mnist(Some("/tmp/m".into()))
        );
        assert_eq!(
            DataSpec::parse("csv:a.csv").unwrap(),
            DataSpec::Csv("a.csv".into())
        );
        assert_eq!(
            DataSpec::parse("moons").unwrap(),
            DataSpec::Synthetic("moons".into())
        );
        // A table file by its extension, a Windows drive letter included.
        for path in [
            "iris.csv",
            "data/Iris.TSV",
            "C:/data/iris.csv",
            "iris.csv.gz",
        ] {
            assert_eq!(DataSpec::parse(path).unwrap(), DataSpec::Csv(path.into()));
        }
        for (path, name) in [
            ("data/iris.csv", "iris"),
            ("iris.csv.gz", "iris"),
            ("Iris.TSV", "Iris"),
            ("a.b.csv", "a.b"),
        ] {
            assert_eq!(DataSpec::parse(path).unwrap().name(), name, "{path}");
        }
        for (spec, hint) in [
            ("spirals:3", "only mnist and csv take a path"),
            ("Cargo.toml", "csv:Cargo.toml"),
            ("src", "mnist:src"),
        ] {
            let message = DataSpec::parse(spec).unwrap_err().to_string();
            assert!(message.contains(hint), "{spec}: {message}");
        }
        assert!(
            DataSpec::parse("csv:")
                .unwrap_err()
                .to_string()
                .contains("needs a path")
        );
        assert!(
            DataSpec::parse("cifar")
                .unwrap_err()
                .to_string()
                .contains("unknown data set")
        );
    }
}
