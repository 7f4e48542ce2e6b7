//! Activation functions and their derivatives.
//!
//! Derivatives are written in terms of the activation's *output* `y = f(z)`, so the backward
//! pass needs only the stored outputs, never the pre-activations. The same formulas are in
//! `shaders/common.wgsl`; the numeric codes (`gpu_code`) tie the two together.

use serde::{Deserialize, Serialize};

/// Slope of leaky ReLU for negative inputs (PyTorch's default).
pub const LEAKY_RELU_SLOPE: f32 = 0.01;

/// Runs `$body` with `$activation` bound to a constant for each value of `$value`, so that the
/// activation's `match` folds away inside `$body`'s loops and they specialise (and, for the
/// piecewise-linear activations, vectorise) per activation.
macro_rules! specialised {
    ($value:expr, |$activation:ident| $body:block) => {
        match $value {
            Activation::Linear => {
                let $activation = Activation::Linear;
                $body
            }
            Activation::Relu => {
                let $activation = Activation::Relu;
                $body
            }
            Activation::LeakyRelu => {
                let $activation = Activation::LeakyRelu;
                $body
            }
            Activation::Sigmoid => {
                let $activation = Activation::Sigmoid;
                $body
            }
            Activation::Tanh => {
                let $activation = Activation::Tanh;
                $body
            }
            Activation::Softmax => {
                let $activation = Activation::Softmax;
                $body
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Linear,
    Relu,
    LeakyRelu,
    Sigmoid,
    Tanh,
    /// Row-wise softmax; only allowed on the output layer, where it is fused with the loss.
    Softmax,
}

impl Activation {
    pub const ALL: [Activation; 6] = [
        Activation::Linear,
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softmax,
    ];

    /// The code the WGSL kernels switch on (an `override` constant).
    pub fn gpu_code(self) -> u32 {
        match self {
            Activation::Linear => 0,
            Activation::Relu => 1,
            Activation::LeakyRelu => 2,
            Activation::Sigmoid => 3,
            Activation::Tanh => 4,
            Activation::Softmax => 5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
        }
    }

    /// Element-wise activation. Softmax is row-wise and handled by [`softmax_in_place`].
    pub fn apply(self, z: f32) -> f32 {
        match self {
            Activation::Linear | Activation::Softmax => z,
            Activation::Relu => z.max(0.0),
            Activation::LeakyRelu => {
                if z > 0.0 {
                    z
                } else {
                    LEAKY_RELU_SLOPE * z
                }
            }
            Activation::Sigmoid => sigmoid(z),
            Activation::Tanh => z.tanh(),
        }
    }

    /// f'(z) expressed through y = f(z). Not defined for softmax (its Jacobian is not diagonal).
    pub fn grad_from_output(self, y: f32) -> f32 {
        match self {
            Activation::Linear | Activation::Softmax => 1.0,
            Activation::Relu => {
                if y > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu => {
                if y > 0.0 {
                    1.0
                } else {
                    LEAKY_RELU_SLOPE
                }
            }
            Activation::Sigmoid => y * (1.0 - y),
            Activation::Tanh => 1.0 - y * y,
        }
    }

    /// `values[i] = f(values[i] + bias[i])`: a bias-and-activation epilogue over one row.
    pub fn apply_with_bias(self, values: &mut [f32], bias: &[f32]) {
        specialised!(self, |activation| {
            for (v, b) in values.iter_mut().zip(bias) {
                *v = activation.apply(*v + b);
            }
        })
    }

    /// `grads[i] *= f'(z)` with `outputs[i] = f(z)`: an activation-gradient epilogue over one
    /// row.
    pub fn scale_by_grad(self, grads: &mut [f32], outputs: &[f32]) {
        specialised!(self, |activation| {
            for (g, &y) in grads.iter_mut().zip(outputs) {
                *g *= activation.grad_from_output(y);
            }
        })
    }

    /// Glorot/Xavier for saturating or linear units, He for the ReLU family.
    pub fn uses_he_init(self) -> bool {
        matches!(self, Activation::Relu | Activation::LeakyRelu)
    }
}

impl std::str::FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == s.to_ascii_lowercase().replace('-', "_"))
            .ok_or_else(|| {
                format!("unknown activation '{s}' (expected linear, relu, leaky_relu, sigmoid, tanh or softmax)")
            })
    }
}

/// Numerically stable logistic function (never evaluates exp of a large positive number).
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Softmax of one row, shifted by its maximum so that exp never overflows.
pub fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}
