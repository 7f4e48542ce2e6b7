//! The model description: layers, activations, loss, optimizer and regularization. It knows
//! nothing of devices; `Model::new` (in `train`) turns it into something that runs.

use serde::{Deserialize, Serialize};

mod activation;
mod loss;
mod optimizer;
mod summary;

pub use activation::{Activation, LEAKY_RELU_SLOPE, sigmoid, softmax_in_place};
pub use loss::Loss;
pub use optimizer::Optimizer;

use crate::error::{Result, WgradError};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A fully connected layer: `y = f(x·Wᵀ + b)`, with `W` stored as `[units, inputs]` like
/// PyTorch's `nn.Linear`, and inverted dropout on `y` during training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    pub units: usize,
    pub activation: Activation,
    /// Fraction of this layer's outputs zeroed in training (0 = off). Not allowed on the output.
    pub dropout: f32,
}

/// The most parameters (weights and biases, with the flat layout's alignment padding) a
/// model may have: 2^30, 4 GiB of `f32` weights, 16 GiB with gradients and Adam's state.
/// [`Sequential::validate`] checks it, so widths from code, a command line or a model file
/// are refused before anything is allocated for them.
pub const MAX_PARAMETERS: usize = 1 << 30;

/// A stack of dense layers with its loss, optimizer and weight penalties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequential {
    pub input_dim: usize,
    pub layers: Vec<Dense>,
    /// `None` picks the loss Keras users expect for the output activation.
    pub loss: Option<Loss>,
    pub optimizer: Optimizer,
    /// L1 penalty λ₁·Σ|w| on weights (not biases).
    pub l1: f32,
    /// L2 penalty λ₂·Σw² on weights (not biases), as Keras's `l2(λ₂)`.
    pub l2: f32,
    /// Seed of the weight initialisation.
    pub seed: u64,
    /// Set when `.dropout()` came before any layer, which is not supported; reported by
    /// [`Sequential::validate`].
    #[serde(skip)]
    pub dropout_before_layers: bool,
}

// The rules for single settings, shared by the checks here and the command line's (which
// puts its flag's name before the message). `Err` says what is wrong, without the name.

/// An L1 or L2 penalty: finite and ≥ 0.
pub fn check_penalty(value: f32) -> std::result::Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("must be finite and ≥ 0, got {value}"))
    }
}

/// A dropout rate: in [0, 1).
pub fn check_dropout_rate(rate: f32) -> std::result::Result<(), String> {
    if (0.0..1.0).contains(&rate) {
        Ok(())
    } else {
        Err(format!("rate must be in [0, 1), got {rate}"))
    }
}

/// A learning rate: finite and > 0.
pub fn check_learning_rate(rate: f32) -> std::result::Result<(), String> {
    if rate.is_finite() && rate > 0.0 {
        Ok(())
    } else {
        Err(format!("must be a finite number > 0, got {rate}"))
    }
}

impl Sequential {
    /// A model of `input_dim` inputs and no layers yet, trained with Adam (rate 0.001), no
    /// penalties, the loss its output activation implies, and initial weights from seed 0.
    pub fn new(input_dim: usize) -> Self {
        Sequential {
            input_dim,
            layers: Vec::new(),
            loss: None,
            optimizer: Optimizer::adam(1e-3),
            l1: 0.0,
            l2: 0.0,
            seed: 0,
            dropout_before_layers: false,
        }
    }

    /// Adds a dense layer of `units` outputs with `activation` (the last one added is the
    /// output layer).
    pub fn dense(mut self, units: usize, activation: Activation) -> Self {
        self.layers.push(Dense {
            units,
            activation,
            dropout: 0.0,
        });
        self
    }

    /// Dropout on the output of the most recently added layer.
    pub fn dropout(mut self, rate: f32) -> Self {
        match self.layers.last_mut() {
            Some(last) => last.dropout = rate,
            None => self.dropout_before_layers = true,
        }
        self
    }

    /// Sets the loss (by default, what the output activation implies: sigmoid binary
    /// cross-entropy, softmax categorical cross-entropy, otherwise mean squared error).
    pub fn loss(mut self, loss: Loss) -> Self {
        self.loss = Some(loss);
        self
    }

    /// Sets the optimizer and its learning rate (default Adam at 0.001).
    pub fn optimizer(mut self, optimizer: Optimizer) -> Self {
        self.optimizer = optimizer;
        self
    }

    /// An L1 penalty `lambda·Σ|w|` on the weights (not the biases), trained with the loss.
    pub fn l1(mut self, lambda: f32) -> Self {
        self.l1 = lambda;
        self
    }

    /// An L2 penalty `lambda·Σw²` on the weights (not the biases), trained with the loss.
    pub fn l2(mut self, lambda: f32) -> Self {
        self.l2 = lambda;
        self
    }

    /// The seed of the initial weights (`FitConfig::seed` is the shuffling's and dropout's).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn output_dim(&self) -> usize {
        self.layers.last().map_or(self.input_dim, |l| l.units)
    }

    /// Width of the input of layer `i`.
    pub fn fan_in(&self, i: usize) -> usize {
        if i == 0 {
            self.input_dim
        } else {
            self.layers[i - 1].units
        }
    }

    pub fn output_activation(&self) -> Activation {
        self.layers
            .last()
            .map_or(Activation::Linear, |l| l.activation)
    }

    pub fn resolved_loss(&self) -> Loss {
        self.loss
            .unwrap_or_else(|| Loss::default_for(self.output_activation()))
    }

    /// Checks everything that can be checked before any data is seen.
    pub fn validate(&self) -> Result<()> {
        let invalid = |msg: String| Err(WgradError::InvalidModel(msg));
        if self.input_dim == 0 {
            return invalid("the input width is 0".into());
        }
        if self.layers.is_empty() {
            return invalid(
                "the model has no layers: add at least one with .dense(units, activation)".into(),
            );
        }
        if self.dropout_before_layers {
            return invalid(
                "dropout() must follow a dense() layer: dropout on the inputs is not supported"
                    .into(),
            );
        }
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.units == 0 {
                return invalid(format!("layer {i} has 0 units"));
            }
            if layer.activation == Activation::Softmax && i != last {
                return invalid(format!(
                    "layer {i}: softmax is only allowed on the output layer"
                ));
            }
            check_dropout_rate(layer.dropout)
                .or_else(|e| invalid(format!("layer {i}: dropout {e}")))?;
            if layer.dropout > 0.0 && i == last {
                return invalid("dropout on the output layer is not supported".into());
            }
        }
        self.param_count()?;
        let loss = self.resolved_loss();
        loss.check_output(self.output_activation())
            .or_else(invalid)?;
        let softmax_like = loss == Loss::CategoricalCrossEntropy
            || self.output_activation() == Activation::Softmax;
        if softmax_like && self.output_dim() < 2 {
            return invalid(format!(
                "a softmax / categorical cross-entropy output needs at least 2 units, the output layer has {}; \
                 for two classes use 1 sigmoid unit with binary cross-entropy",
                self.output_dim()
            ));
        }
        self.optimizer
            .check()
            .or_else(|e| invalid(format!("optimizer {}: {e}", self.optimizer.name())))?;
        let lr = self.optimizer.learning_rate();
        if check_learning_rate(lr).is_err() {
            return Err(WgradError::InvalidLearningRate(lr));
        }
        for (name, value) in [("l1", self.l1), ("l2", self.l2)] {
            check_penalty(value).or_else(|e| invalid(format!("{name} penalty {e}")))?;
        }
        Ok(())
    }

    /// The number of values in `spec`'s flat parameter layout, alignment padding included, or an
    /// error naming the first layer at which it exceeds [`MAX_PARAMETERS`]; computed with checked
    /// arithmetic, so absurd widths (`784,1000000000000,10`) are an error, not an overflow or an
    /// allocation.
    pub fn param_count(&self) -> Result<usize> {
        let align = ParamLayout::ALIGN;
        let padded = |n: usize| n.checked_next_multiple_of(align);
        let mut total: usize = 0;
        for (i, layer) in self.layers.iter().enumerate() {
            let fan_in = self.fan_in(i);
            let tensors = fan_in
                .checked_mul(layer.units)
                .and_then(padded)
                .zip(padded(layer.units))
                .and_then(|(w, b)| w.checked_add(b));
            match tensors.and_then(|n| total.checked_add(n)) {
                Some(n) if n <= MAX_PARAMETERS => total = n,
                _ => {
                    return Err(WgradError::InvalidModel(format!(
                        "layer {i} ({fan_in} inputs x {} units) takes the model past {MAX_PARAMETERS} \
                         parameters, the most wgrad supports",
                        layer.units
                    )));
                }
            }
        }
        Ok(total)
    }

    /// Where each layer's weight and bias lives in one flat parameter vector.
    pub fn param_layout(&self) -> ParamLayout {
        ParamLayout::new(self)
    }

    /// Seeded initial parameters: Glorot/Xavier uniform for linear, sigmoid, tanh and softmax
    /// layers, He uniform for the ReLU family; biases start at zero.
    pub fn initial_params(&self) -> Vec<f32> {
        let layout = self.param_layout();
        let mut params = vec![0.0; layout.len];
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        for (i, layer) in self.layers.iter().enumerate() {
            let fan_in = self.fan_in(i) as f32;
            let fan_out = layer.units as f32;
            let bound = if layer.activation.uses_he_init() {
                (6.0 / fan_in).sqrt()
            } else {
                (6.0 / (fan_in + fan_out)).sqrt()
            };
            let w = &layout.tensors[2 * i];
            for v in &mut params[w.offset..w.offset + w.len] {
                *v = rng.random_range(-bound..bound);
            }
        }
        params
    }
}

/// One tensor in the flat parameter vector.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSlot {
    /// `layers.{i}.weight` or `layers.{i}.bias`, as PyTorch names them.
    pub name: String,
    /// `[out, in]` for weights, `[out]` for biases.
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
    /// Whether L1/L2 penalties apply (weights yes, biases no).
    pub regularized: bool,
}

/// Layout of all parameters in one flat vector: `[W0, b0, W1, b1, …]`, each tensor starting
/// at a multiple of [`ParamLayout::ALIGN`] elements so a GPU can bind every tensor on its own
/// (storage-buffer offsets must be 256-byte aligned).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamLayout {
    pub tensors: Vec<TensorSlot>,
    pub len: usize,
}

impl ParamLayout {
    pub const ALIGN: usize = 64;

    fn new(spec: &Sequential) -> Self {
        let mut tensors = Vec::new();
        let mut offset = 0;
        for (i, layer) in spec.layers.iter().enumerate() {
            let fan_in = spec.fan_in(i);
            for (kind, shape) in [
                ("weight", vec![layer.units, fan_in]),
                ("bias", vec![layer.units]),
            ] {
                let len = shape.iter().product();
                tensors.push(TensorSlot {
                    name: format!("layers.{i}.{kind}"),
                    shape,
                    offset,
                    len,
                    regularized: kind == "weight",
                });
                offset += len.div_ceil(Self::ALIGN) * Self::ALIGN;
            }
        }
        ParamLayout {
            tensors,
            len: offset,
        }
    }

    pub fn weight(&self, layer: usize) -> &TensorSlot {
        &self.tensors[2 * layer]
    }

    pub fn bias(&self, layer: usize) -> &TensorSlot {
        &self.tensors[2 * layer + 1]
    }

    /// Number of trainable values (without alignment padding).
    pub fn count(&self) -> usize {
        self.tensors.iter().map(|t| t.len).sum()
    }
}
