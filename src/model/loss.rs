//! Loss functions. Each is computed from the output layer's *logits*, together with the output
//! activation, so that the cross-entropies are numerically stable (like PyTorch's
//! `BCEWithLogitsLoss` and `CrossEntropyLoss`). The formulas live in `cpu::ops::output_loss`
//! and `shaders/output.wgsl`.

use serde::{Deserialize, Serialize};

use super::Activation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Mean over all outputs of (f(z) - y)².
    MeanSquaredError,
    /// Mean over all outputs of -[y·log σ(z) + (1-y)·log(1-σ(z))]; output sigmoid or linear (logits).
    BinaryCrossEntropy,
    /// Mean over rows of -Σ y·log softmax(z); output softmax or linear (logits).
    CategoricalCrossEntropy,
}

impl Loss {
    pub const ALL: [Loss; 3] = [
        Loss::MeanSquaredError,
        Loss::BinaryCrossEntropy,
        Loss::CategoricalCrossEntropy,
    ];

    pub fn gpu_code(self) -> u32 {
        match self {
            Loss::MeanSquaredError => 0,
            Loss::BinaryCrossEntropy => 1,
            Loss::CategoricalCrossEntropy => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Loss::MeanSquaredError => "mse",
            Loss::BinaryCrossEntropy => "bce",
            Loss::CategoricalCrossEntropy => "ce",
        }
    }

    /// The loss Keras users would pick for this output activation.
    pub fn default_for(output: Activation) -> Loss {
        match output {
            Activation::Sigmoid => Loss::BinaryCrossEntropy,
            Activation::Softmax => Loss::CategoricalCrossEntropy,
            _ => Loss::MeanSquaredError,
        }
    }

    /// Which output activations this loss can be fused with; `Err` says why not.
    pub fn check_output(self, output: Activation) -> Result<(), String> {
        let ok = match self {
            Loss::MeanSquaredError => true,
            Loss::BinaryCrossEntropy => matches!(output, Activation::Sigmoid | Activation::Linear),
            Loss::CategoricalCrossEntropy => {
                matches!(output, Activation::Softmax | Activation::Linear)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "loss '{}' needs a {} output layer (or linear, meaning logits), not {}",
                self.name(),
                if self == Loss::BinaryCrossEntropy {
                    "sigmoid"
                } else {
                    "softmax"
                },
                output.name()
            ))
        }
    }

    /// The probability-like output the model reports for this loss: the cross-entropies imply
    /// sigmoid/softmax even when the output layer is declared linear (logits).
    pub fn output_activation(self, declared: Activation) -> Activation {
        match self {
            Loss::MeanSquaredError => declared,
            Loss::BinaryCrossEntropy => Activation::Sigmoid,
            Loss::CategoricalCrossEntropy => Activation::Softmax,
        }
    }
}

impl std::str::FromStr for Loss {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mse" | "mean_squared_error" => Ok(Loss::MeanSquaredError),
            "bce" | "binary_crossentropy" | "binary_cross_entropy" => Ok(Loss::BinaryCrossEntropy),
            // Keras's sparse variant is the same loss on integer labels (`Targets::Classes`).
            "ce"
            | "categorical_crossentropy"
            | "categorical_cross_entropy"
            | "sparse_categorical_crossentropy"
            | "cross_entropy" => Ok(Loss::CategoricalCrossEntropy),
            _ => Err(format!(
                "unknown loss '{s}' (expected mse, bce or ce, or Keras's names: \
                 mean_squared_error, binary_crossentropy, categorical_crossentropy)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Loss;

    #[test]
    fn names_parse_as_keras_and_pytorch_users_write_them() {
        for (names, loss) in [
            (
                &["mse", "mean_squared_error", "MSE"][..],
                Loss::MeanSquaredError,
            ),
            (
                &["bce", "binary_crossentropy", "binary_cross_entropy"],
                Loss::BinaryCrossEntropy,
            ),
            (
                &[
                    "ce",
                    " CE ",
                    "categorical_crossentropy",
                    "categorical_cross_entropy",
                    "sparse_categorical_crossentropy",
                    "cross_entropy",
                ],
                Loss::CategoricalCrossEntropy,
            ),
        ] {
            for name in names {
                assert_eq!(name.parse::<Loss>(), Ok(loss), "{name}");
            }
        }
        assert!(
            "hinge"
                .parse::<Loss>()
                .unwrap_err()
                .contains("unknown loss 'hinge'")
        );
    }
}
