//! Optimizers, with PyTorch's update rules (`torch.optim`), written once here as the contract
//! that `cpu::ops::optimizer_update` and `shaders/optimizer.wgsl` both implement:
//!
//! - SGD:       w -= lr·g
//! - momentum:  v = μ·v + g;  w -= lr·v            (Nesterov: w -= lr·(g + μ·v))
//! - RMSprop:   s = ρ·s + (1-ρ)·g²;  w -= lr·g / (√s + ε)
//! - Adam:      m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²;  w -= lr·(m/(1-β1ᵗ)) / (√(v/(1-β2ᵗ)) + ε)
//!
//! where g already includes the L1/L2 penalty gradient (weights only, not biases).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Optimizer {
    Sgd {
        learning_rate: f32,
        momentum: f32,
        nesterov: bool,
    },
    RmsProp {
        learning_rate: f32,
        rho: f32,
        epsilon: f32,
    },
    Adam {
        learning_rate: f32,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
    },
}

impl Optimizer {
    pub fn sgd(learning_rate: f32) -> Self {
        Optimizer::Sgd {
            learning_rate,
            momentum: 0.0,
            nesterov: false,
        }
    }
    pub fn momentum(learning_rate: f32, momentum: f32) -> Self {
        Optimizer::Sgd {
            learning_rate,
            momentum,
            nesterov: false,
        }
    }
    pub fn nesterov(learning_rate: f32, momentum: f32) -> Self {
        Optimizer::Sgd {
            learning_rate,
            momentum,
            nesterov: true,
        }
    }
    /// Keras's defaults: ρ = 0.9, ε = 1e-7.
    pub fn rmsprop(learning_rate: f32) -> Self {
        Optimizer::RmsProp {
            learning_rate,
            rho: 0.9,
            epsilon: 1e-7,
        }
    }
    /// PyTorch's defaults: β = (0.9, 0.999), ε = 1e-8.
    pub fn adam(learning_rate: f32) -> Self {
        Optimizer::Adam {
            learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }

    /// Checks every hyper-parameter but the learning rate (which has its own error).
    pub fn check(&self) -> Result<(), String> {
        let unit = |name: &str, v: f32| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} must be in [0, 1), got {v}"))
            }
        };
        let epsilon = |v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("epsilon must be finite and > 0, got {v}"))
            }
        };
        match *self {
            Optimizer::Sgd { momentum, .. } => unit("momentum", momentum),
            Optimizer::RmsProp {
                rho, epsilon: e, ..
            } => unit("rho", rho).and(epsilon(e)),
            Optimizer::Adam {
                beta1,
                beta2,
                epsilon: e,
                ..
            } => unit("beta1", beta1)
                .and(unit("beta2", beta2))
                .and(epsilon(e)),
        }
    }

    /// Which of the two state vectors the update keeps (see `Backend::optimizer_state`).
    pub fn state_vectors(&self) -> [bool; 2] {
        let code = self.gpu_code();
        [code > 0, code == 4]
    }

    pub fn learning_rate(&self) -> f32 {
        match *self {
            Optimizer::Sgd { learning_rate, .. }
            | Optimizer::RmsProp { learning_rate, .. }
            | Optimizer::Adam { learning_rate, .. } => learning_rate,
        }
    }

    pub fn set_learning_rate(&mut self, rate: f32) {
        match self {
            Optimizer::Sgd { learning_rate, .. }
            | Optimizer::RmsProp { learning_rate, .. }
            | Optimizer::Adam { learning_rate, .. } => *learning_rate = rate,
        }
    }

    pub fn gpu_code(&self) -> u32 {
        match *self {
            Optimizer::Sgd {
                momentum, nesterov, ..
            } => match (momentum > 0.0, nesterov) {
                (false, _) => 0,
                (true, false) => 1,
                (true, true) => 2,
            },
            Optimizer::RmsProp { .. } => 3,
            Optimizer::Adam { .. } => 4,
        }
    }

    /// The two hyper-parameters and ε the update reads (unused ones are 0).
    pub fn hyper_parameters(&self) -> [f32; 3] {
        match *self {
            Optimizer::Sgd { momentum, .. } => [momentum, 0.0, 0.0],
            Optimizer::RmsProp { rho, epsilon, .. } => [rho, 0.0, epsilon],
            Optimizer::Adam {
                beta1,
                beta2,
                epsilon,
                ..
            } => [beta1, beta2, epsilon],
        }
    }

    /// Adam's bias corrections (1-β1ᵗ, 1-β2ᵗ) for step t ≥ 1; (1, 1) for the others.
    pub fn bias_corrections(&self, step: u64) -> (f32, f32) {
        match *self {
            Optimizer::Adam { beta1, beta2, .. } => {
                let t = step.min(i32::MAX as u64) as i32;
                (1.0 - beta1.powi(t), 1.0 - beta2.powi(t))
            }
            _ => (1.0, 1.0),
        }
    }

    pub fn name(&self) -> &'static str {
        match self.gpu_code() {
            0 => "sgd",
            1 => "momentum",
            2 => "nesterov",
            3 => "rmsprop",
            _ => "adam",
        }
    }
}
