//! A model summary in the manner of Keras's `model.summary()`.

use super::{Optimizer, Sequential};
use std::fmt::Write;

impl Sequential {
    /// A table of the layers with their output shapes and parameter counts.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let rule = "─".repeat(72);
        let _ = writeln!(out, "{rule}");
        let _ = writeln!(
            out,
            "{:<18}{:<16}{:>12}  {:<12}{:>8}",
            "Layer", "Output shape", "Params", "Activation", "Dropout"
        );
        let _ = writeln!(out, "{rule}");
        let _ = writeln!(
            out,
            "{:<18}{:<16}{:>12}",
            "input",
            format!("(None, {})", self.input_dim),
            0
        );
        let mut total = 0;
        for (i, layer) in self.layers.iter().enumerate() {
            let params = layer.units * self.fan_in(i) + layer.units;
            total += params;
            let dropout = if layer.dropout > 0.0 {
                format!("{}", layer.dropout)
            } else {
                "-".into()
            };
            let _ = writeln!(
                out,
                "{:<18}{:<16}{:>12}  {:<12}{:>8}",
                format!("layers.{i} (Dense)"),
                format!("(None, {})", layer.units),
                group_thousands(params),
                layer.activation.name(),
                dropout
            );
        }
        let _ = writeln!(out, "{rule}");
        let _ = writeln!(
            out,
            "Total params: {} ({:.2} MiB as f32)",
            group_thousands(total),
            total as f64 * 4.0 / 1048576.0
        );
        let _ = writeln!(out, "{}", self.training());
        out
    }

    /// The summary in one line, for logs and `Debug`: "4-16-3 (relu, softmax). Loss: ce;
    /// optimizer: adam (lr 0.01, beta1 0.9, …)".
    pub fn summary_line(&self) -> String {
        let activations: Vec<&str> = self.layers.iter().map(|l| l.activation.name()).collect();
        format!(
            "{} ({}). {}",
            self.widths(),
            activations.join(", "),
            self.training()
        )
    }

    /// The width of the input and of each layer: "784-128-10".
    pub fn widths(&self) -> String {
        std::iter::once(self.input_dim)
            .chain(self.layers.iter().map(|l| l.units))
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join("-")
    }

    /// "Loss: ce; optimizer: adam (lr 0.01, beta1 0.9, beta2 0.999, epsilon 1e-8)", with the
    /// weight penalties that are on.
    fn training(&self) -> String {
        let settings = match self.optimizer {
            Optimizer::Sgd { momentum, .. } if momentum > 0.0 => format!(", momentum {momentum}"),
            Optimizer::Sgd { .. } => String::new(),
            Optimizer::RmsProp { rho, epsilon, .. } => format!(", rho {rho}, epsilon {epsilon:e}"),
            Optimizer::Adam {
                beta1,
                beta2,
                epsilon,
                ..
            } => format!(", beta1 {beta1}, beta2 {beta2}, epsilon {epsilon:e}"),
        };
        let mut training = format!(
            "Loss: {}; optimizer: {} (lr {}{settings})",
            self.resolved_loss().name(),
            self.optimizer.name(),
            self.optimizer.learning_rate()
        );
        if self.l1 > 0.0 {
            let _ = write!(training, "; L1 {}", self.l1);
        }
        if self.l2 > 0.0 {
            let _ = write!(training, "; L2 {}", self.l2);
        }
        training
    }
}

fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::{Activation, Sequential};

    #[test]
    fn counts_match_keras() {
        // Keras: Dense(128) on 784 inputs has 100,480 parameters, Dense(10) on 128 has 1,290.
        let s = Sequential::new(784)
            .dense(128, Activation::Relu)
            .dense(10, Activation::Softmax)
            .summary();
        assert!(
            s.contains("100,480") && s.contains("1,290") && s.contains("Total params: 101,770"),
            "{s}"
        );
    }
}
