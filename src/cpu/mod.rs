//! The CPU backend: the reference every GPU result is tested against, and a real device a
//! user can pick (`Device::Cpu`). It runs the same steps as the GPU scheduler, in the same
//! order, with the functions of [`ops`].

pub mod gemm;
pub mod ops;
mod vector;

use crate::backend::{Backend, Metrics, Slot, StepParams};
use crate::error::{Result, WgradError};
use crate::model::{Activation, Loss, ParamLayout, Sequential, TensorSlot};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, s};
use ops::Dropout;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// The fewest elements per task of the parallel optimizer update (smaller tensors stay on
/// one thread).
const UPDATE_MIN_CHUNK: usize = 1 << 13;
/// The gather of a batch is split across threads down to this many floats per task.
const GATHER_SPLIT_MIN: usize = 1 << 15;

pub struct CpuBackend {
    spec: Sequential,
    layout: ParamLayout,
    loss: Loss,
    params: Vec<f32>,
    grads: Vec<f32>,
    /// Optimizer state: momentum / squared-gradient average / Adam's first moment.
    state1: Vec<f32>,
    /// Adam's second moment.
    state2: Vec<f32>,
    /// Copies of `params`, `state1` and `state2` at the last [`Backend::snapshot`].
    snapshot: [Vec<f32>; 3],
    work: Workspace,
    data: HashMap<Slot, (Inputs, Array2<f32>)>,
    order: Vec<u32>,
    train_metrics: Metrics,
}

/// The parameter-sized vectors a [`CpuBackend`] holds: `params`, `grads`, `state1`, `state2`
/// and the three of `snapshot`.
pub const PARAMETER_VECTORS: usize = 7;

/// Asks for `elements` f32s of host memory, and gives it back: an error naming `what` where
/// the machine cannot give that much, checked before arrays that large are built (a failed
/// allocation inside them aborts the process, and `ulimit -v` or the kernel's overcommit
/// limit refuse a single request larger than the machine).
pub fn check_host_memory(elements: u128, what: &str) -> Result<()> {
    let bytes = elements * 4;
    let refused = || WgradError::OutOfMemory {
        what: what.to_string(),
        bytes,
    };
    let mut probe: Vec<f32> = Vec::new();
    probe
        .try_reserve_exact(usize::try_from(elements).map_err(|_| refused())?)
        .map_err(|_| refused())
}

/// A data set's inputs as the backend keeps them: values that are all bytes k / 255 (8-bit
/// images: [`crate::data::byte_of`]) as their bytes, a quarter of the memory and of the
/// reads that gather each batch; anything else as f32. Either gives the same f32 bits.
enum Inputs {
    F32(Array2<f32>),
    Bytes(Array2<u8>),
}

impl Inputs {
    fn of(x: ArrayView2<f32>) -> Inputs {
        match x.iter().map(|&v| crate::data::byte_of(v)).collect() {
            Some(bytes) => {
                Inputs::Bytes(Array2::from_shape_vec(x.dim(), bytes).expect("one byte per value"))
            }
            None => Inputs::F32(x.to_owned()),
        }
    }

    fn nrows(&self) -> usize {
        match self {
            Inputs::F32(x) => x.nrows(),
            Inputs::Bytes(x) => x.nrows(),
        }
    }

    /// Writes row `row`'s f32 values into `dst`.
    fn copy_row_into(&self, mut dst: ArrayViewMut1<f32>, row: usize) {
        match self {
            Inputs::F32(x) => copy_row(dst, x.row(row)),
            Inputs::Bytes(x) => {
                let src = x.row(row);
                match (dst.as_slice_mut(), src.as_slice()) {
                    (Some(dst), Some(src)) => vector::widest(|| {
                        for (value, &byte) in dst.iter_mut().zip(src) {
                            *value = f32::from(byte) / 255.0;
                        }
                    }),
                    _ => dst.zip_mut_with(&src, |value, &byte| *value = f32::from(byte) / 255.0),
                }
            }
        }
    }
}

/// Copies x and y rows `row_of(first + i)` into row `i` of `input` and `targets`, on
/// several threads when there are many: random rows of a data set larger than the caches
/// are bound by memory latency, and each core brings its own misses.
fn gather_rows(
    x: &Inputs,
    y: ArrayView2<f32>,
    mut input: ArrayViewMut2<f32>,
    mut targets: ArrayViewMut2<f32>,
    first: usize,
    row_of: &(impl Fn(usize) -> usize + Sync),
) {
    let rows = input.nrows();
    if rows >= 2 && rows * input.ncols() >= GATHER_SPLIT_MIN {
        let half = rows / 2;
        let (input_top, input_bottom) = input.split_at(Axis(0), half);
        let (targets_top, targets_bottom) = targets.split_at(Axis(0), half);
        rayon::join(
            || gather_rows(x, y, input_top, targets_top, first, row_of),
            || gather_rows(x, y, input_bottom, targets_bottom, first + half, row_of),
        );
        return;
    }
    for i in 0..rows {
        let source = row_of(first + i);
        x.copy_row_into(input.row_mut(i), source);
        copy_row(targets.row_mut(i), y.row(source));
    }
}

/// `dst = src` for one row: a `memcpy` when both are contiguous (the backend's own arrays
/// always are), which ndarray's element-wise `assign` is not.
fn copy_row(mut dst: ArrayViewMut1<f32>, src: ArrayView1<f32>) {
    match (dst.as_slice_mut(), src.as_slice()) {
        (Some(dst), Some(src)) => dst.copy_from_slice(src),
        _ => dst.assign(&src),
    }
}

/// Runs `work` on a pool thread while the pool's other threads stay awake, taking its
/// parallel parts as soon as they appear instead of sleeping between them.
///
/// Running on a pool thread lets each `join` hand its second half to another thread directly
/// rather than through the caller's wake-up. Keeping the others awake matters as much: a
/// training step alternates short parallel products with short serial parts, and a thread
/// that goes to sleep in a serial part must be woken for the next product, which on a
/// virtual machine costs an interrupt to a halted CPU each time. A waiting thread with
/// nothing to take yields to the OS rather than spinning in place, so that a pool with more
/// threads than cores does not starve the threads doing the work (pure spinning made
/// 784-128-10 14 times slower with four threads on two cores).
fn with_pool_awake<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    /// Tells the waiting threads to stop when `work` returns or unwinds.
    struct Finish<'a>(&'a AtomicBool);
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let finished = AtomicBool::new(false);
    rayon::scope(|scope| {
        let owner = rayon::current_thread_index();
        let finished = &finished;
        scope.spawn_broadcast(move |_, context| {
            if Some(context.index()) == owner {
                return;
            }
            while !finished.load(Ordering::Acquire) {
                if rayon::yield_now() == Some(rayon::Yield::Idle) {
                    std::thread::yield_now();
                }
            }
        });
        let _finish = Finish(finished);
        work()
    })
}

/// Per-batch arrays, allocated once per batch size.
struct Workspace {
    batch_size: usize,
    /// activations[0] is the input batch; activations[i + 1] is layer i's output.
    activations: Vec<Array2<f32>>,
    /// grad_outputs[i]: gradient of the loss with respect to layer i's pre-activation.
    grad_outputs: Vec<Array2<f32>>,
    targets: Array2<f32>,
    row_loss: Array1<f32>,
    row_correct: Array1<f32>,
}

impl Workspace {
    fn new(spec: &Sequential, batch_size: usize) -> Self {
        let mut activations = vec![Array2::zeros((batch_size, spec.input_dim))];
        activations.extend(
            spec.layers
                .iter()
                .map(|l| Array2::zeros((batch_size, l.units))),
        );
        Workspace {
            batch_size,
            activations,
            grad_outputs: spec
                .layers
                .iter()
                .map(|l| Array2::zeros((batch_size, l.units)))
                .collect(),
            targets: Array2::zeros((batch_size, spec.output_dim())),
            row_loss: Array1::zeros(batch_size),
            row_correct: Array1::zeros(batch_size),
        }
    }
}

const DEFAULT_BATCH: usize = 256;

/// A weight tensor of the flat parameter vector as an [out, in] matrix.
fn matrix<'a>(params: &'a [f32], slot: &TensorSlot) -> ArrayView2<'a, f32> {
    ArrayView2::from_shape(
        (slot.shape[0], slot.shape[1]),
        &params[slot.offset..slot.offset + slot.len],
    )
    .expect("weight slot matches its shape")
}

fn vector<'a>(params: &'a [f32], slot: &TensorSlot) -> ArrayView1<'a, f32> {
    ArrayView1::from(&params[slot.offset..slot.offset + slot.len])
}

impl CpuBackend {
    pub fn new(spec: &Sequential, params: &[f32]) -> Self {
        let layout = spec.param_layout();
        CpuBackend {
            loss: spec.resolved_loss(),
            work: Workspace::new(spec, DEFAULT_BATCH),
            params: params.to_vec(),
            grads: vec![0.0; layout.len],
            state1: vec![0.0; layout.len],
            state2: vec![0.0; layout.len],
            snapshot: [
                params.to_vec(),
                vec![0.0; layout.len],
                vec![0.0; layout.len],
            ],
            layout,
            spec: spec.clone(),
            data: HashMap::new(),
            order: Vec::new(),
            train_metrics: Metrics::default(),
        }
    }

    /// The activation a layer's matmul epilogue applies: the output layer emits logits, its
    /// activation is fused with the loss.
    fn epilogue_activation(spec: &Sequential, layer: usize) -> Activation {
        if layer + 1 == spec.layers.len() {
            Activation::Linear
        } else {
            spec.layers[layer].activation
        }
    }

    /// Copies rows `row_of(i)`, `i < rows`, of the slot's x and y into the batch buffers;
    /// the padding rows of a short last batch are zero.
    fn gather(&mut self, slot: Slot, rows: usize, row_of: &(impl Fn(usize) -> usize + Sync)) {
        let (x, y) = &self.data[&slot];
        let (input, mut input_padding) =
            self.work.activations[0].view_mut().split_at(Axis(0), rows);
        let (targets, mut targets_padding) = self.work.targets.view_mut().split_at(Axis(0), rows);
        gather_rows(x, y.view(), input, targets, 0, row_of);
        input_padding.fill(0.0);
        targets_padding.fill(0.0);
    }

    fn forward(&mut self, step: &StepParams) {
        for layer in 0..self.spec.layers.len() {
            let dropout = Dropout::for_step(self.spec.layers[layer].dropout, layer, step);
            let (inputs, outputs) = self.work.activations.split_at_mut(layer + 1);
            ops::dense_forward(
                inputs[layer].view(),
                matrix(&self.params, self.layout.weight(layer)),
                vector(&self.params, self.layout.bias(layer)),
                Self::epilogue_activation(&self.spec, layer),
                dropout,
                outputs[0].view_mut(),
            );
        }
    }

    /// Loss, correctness and output gradient of the current batch; returns the batch's metrics.
    fn output_stage(&mut self, rows: usize) -> Metrics {
        let last = self.spec.layers.len() - 1;
        ops::output_loss(
            self.loss,
            self.spec.output_activation(),
            self.work.activations[last + 1].view(),
            self.work.targets.view(),
            rows,
            self.work.row_loss.view_mut(),
            self.work.row_correct.view_mut(),
            self.work.grad_outputs[last].view_mut(),
        );
        Metrics {
            loss_sum: self.work.row_loss.iter().map(|&v| v as f64).sum(),
            correct: self.work.row_correct.iter().map(|&v| v as f64).sum(),
            count: rows as f64,
            ..Default::default()
        }
    }

    fn backward(&mut self, step: &StepParams) {
        for layer in (0..self.spec.layers.len()).rev() {
            let (w, b) = (self.layout.weight(layer), self.layout.bias(layer));
            let grad_weight = ArrayViewMut2::from_shape(
                (w.shape[0], w.shape[1]),
                &mut self.grads[w.offset..w.offset + w.len],
            )
            .expect("weight slot matches its shape");
            ops::grad_weights(
                self.work.grad_outputs[layer].view(),
                self.work.activations[layer].view(),
                grad_weight,
            );
            ops::grad_bias(
                self.work.grad_outputs[layer].view(),
                (&mut self.grads[b.offset..b.offset + b.len]).into(),
            );
            if layer > 0 {
                let below = &self.spec.layers[layer - 1];
                let (lower, upper) = self.work.grad_outputs.split_at_mut(layer);
                ops::dense_backward_input(
                    upper[0].view(),
                    matrix(&self.params, w),
                    self.work.activations[layer].view(),
                    below.activation,
                    Dropout::for_step(below.dropout, layer - 1, step),
                    lower[layer - 1].view_mut(),
                );
            }
        }
    }

    /// Returns whether every updated parameter and the optimizer state it keeps is finite
    /// (checked in the update's own pass).
    fn update(&mut self, step: &StepParams) -> bool {
        let grad_scale = if step.clip_norm > 0.0 {
            ops::gradient_clip_factor(&self.grads, step.clip_norm)
        } else {
            1.0
        };
        let mut finite = true;
        for slot in &self.layout.tensors {
            let range = slot.offset..slot.offset + slot.len;
            let (l1, l2) = if slot.regularized {
                (self.spec.l1, self.spec.l2)
            } else {
                (0.0, 0.0)
            };
            // Element-wise, so chunks on several threads give the same bits as one pass.
            // About four equal chunks per thread, so that the threads finish together (a
            // fixed chunk length left one of two threads with twice the other's share of a
            // 100k-element tensor), in whole cache lines. `reduce`, not `all`: every chunk
            // must be updated.
            let chunk = slot
                .len
                .div_ceil(4 * rayon::current_num_threads())
                .next_multiple_of(16)
                .max(UPDATE_MIN_CHUNK);
            finite &= self.params[range.clone()]
                .par_chunks_mut(chunk)
                .zip(self.grads[range.clone()].par_chunks(chunk))
                .zip(self.state1[range.clone()].par_chunks_mut(chunk))
                .zip(self.state2[range].par_chunks_mut(chunk))
                .map(|(((params, grads), state1), state2)| {
                    vector::widest(
                        #[inline(always)]
                        || {
                            ops::optimizer_update(
                                &self.spec.optimizer,
                                params,
                                grads,
                                state1,
                                state2,
                                l1,
                                l2,
                                grad_scale,
                                step,
                            )
                        },
                    )
                })
                .reduce(|| true, |a, b| a && b);
        }
        finite
    }

    fn train_step(&mut self, step: &StepParams) {
        let order = std::mem::take(&mut self.order);
        let batch = &order[step.batch_start..step.batch_start + step.rows];
        self.gather(Slot::Train, batch.len(), &|i| batch[i] as usize);
        self.order = order;
        self.forward(step);
        let metrics = self.output_stage(step.rows);
        let total = &mut self.train_metrics;
        total.loss_sum += metrics.loss_sum;
        total.correct += metrics.correct;
        total.count += metrics.count;
        if total.nonfinite_loss.is_none() && !metrics.loss_sum.is_finite() {
            total.nonfinite_loss = Some((step.step, metrics.loss_sum as f32));
        }
        self.backward(step);
        if !self.update(step) && self.train_metrics.nonfinite_params.is_none() {
            self.train_metrics.nonfinite_params = Some(step.step);
        }
    }

    /// The mean loss of one batch and its gradient with respect to every parameter (flat
    /// layout, penalties excluded), without updating anything: what a finite-difference
    /// check compares against.
    pub fn loss_and_gradients(
        &mut self,
        x: ArrayView2<f32>,
        targets: ArrayView2<f32>,
        step: &StepParams,
    ) -> (f32, Vec<f32>) {
        let rows = x.nrows();
        self.set_batch_size(rows)
            .expect("the CPU allocates any batch size");
        self.work.activations[0].assign(&x);
        self.work.targets.assign(&targets);
        let step = StepParams { rows, ..*step };
        self.forward(&step);
        let metrics = self.output_stage(rows);
        self.backward(&step);
        (metrics.mean_loss(), self.grads.clone())
    }
}

impl Backend for CpuBackend {
    fn describe(&self) -> String {
        format!(
            "CPU ({} GEMM, {} threads)",
            gemm::kernel_name(),
            rayon::current_num_threads()
        )
    }

    fn set_batch_size(&mut self, batch_size: usize) -> Result<()> {
        if self.work.batch_size != batch_size {
            let widths: usize = self.spec.input_dim
                + 2 * self.spec.layers.iter().map(|l| l.units).sum::<usize>()
                + self.spec.output_dim()
                + 2;
            check_host_memory(
                batch_size as u128 * widths as u128,
                &format!("a batch of {batch_size} rows' activations and gradients"),
            )?;
            self.work = Workspace::new(&self.spec, batch_size);
        }
        Ok(())
    }

    fn upload(&mut self, slot: Slot, x: ArrayView2<f32>, y: ArrayView2<f32>) -> Result<()> {
        self.data.insert(slot, (Inputs::of(x), y.to_owned()));
        Ok(())
    }

    fn set_order(&mut self, order: &[u32]) -> Result<()> {
        self.order = order.to_vec();
        Ok(())
    }

    fn train_steps(&mut self, steps: &[StepParams]) -> Result<()> {
        with_pool_awake(|| {
            for step in steps {
                self.train_step(step);
            }
        });
        Ok(())
    }

    fn take_train_metrics(&mut self) -> Result<Metrics> {
        Ok(std::mem::take(&mut self.train_metrics))
    }

    fn evaluate(&mut self, slot: Slot) -> Result<Metrics> {
        let n = self.data[&slot].0.nrows();
        let batch = self.work.batch_size;
        let mut total = Metrics::default();
        with_pool_awake(|| {
            for start in (0..n).step_by(batch) {
                let rows = batch.min(n - start);
                self.gather(slot, rows, &|i| start + i);
                self.forward(&StepParams::inference(rows));
                let m = self.output_stage(rows);
                total.loss_sum += m.loss_sum;
                total.correct += m.correct;
                total.count += m.count;
            }
        });
        Ok(total)
    }

    fn predict(&mut self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        let n = x.nrows();
        let batch = self.work.batch_size;
        let last = self.spec.layers.len();
        let mut out = Array2::zeros((n, self.spec.output_dim()));
        with_pool_awake(|| {
            for start in (0..n).step_by(batch) {
                let rows = batch.min(n - start);
                let input = &mut self.work.activations[0];
                input.fill(0.0);
                input
                    .slice_mut(s![..rows, ..])
                    .assign(&x.slice(s![start..start + rows, ..]));
                self.forward(&StepParams::inference(rows));
                out.slice_mut(s![start..start + rows, ..])
                    .assign(&self.work.activations[last].slice(s![..rows, ..]));
            }
        });
        for mut row in out.rows_mut() {
            ops::output_probabilities_row(
                self.loss,
                self.spec.output_activation(),
                row.as_slice_mut().expect("owned rows are contiguous"),
            );
        }
        Ok(out)
    }

    fn params(&mut self) -> Result<Vec<f32>> {
        Ok(self.params.clone())
    }

    fn set_params(&mut self, params: &[f32]) -> Result<()> {
        self.params.copy_from_slice(params);
        Ok(())
    }

    fn optimizer_state(&mut self) -> Result<[Vec<f32>; 2]> {
        let [used1, used2] = self.spec.optimizer.state_vectors();
        let keep = |v: &Vec<f32>, used: bool| if used { v.clone() } else { Vec::new() };
        Ok([keep(&self.state1, used1), keep(&self.state2, used2)])
    }

    fn set_optimizer_state(&mut self, state: &[Vec<f32>; 2]) -> Result<()> {
        for (target, source) in [&mut self.state1, &mut self.state2].into_iter().zip(state) {
            if source.is_empty() {
                target.fill(0.0);
            } else {
                target.copy_from_slice(source);
            }
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<()> {
        for (saved, live) in
            self.snapshot
                .iter_mut()
                .zip([&self.params, &self.state1, &self.state2])
        {
            saved.copy_from_slice(live);
        }
        Ok(())
    }

    fn restore_snapshot(&mut self) -> Result<()> {
        for (live, saved) in [&mut self.params, &mut self.state1, &mut self.state2]
            .into_iter()
            .zip(&self.snapshot)
        {
            live.copy_from_slice(saved);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn work_on_an_awake_pool_returns_its_result_and_lets_the_pool_go_when_it_panics() {
        // Three threads whatever the machine, so that two of them wait awake.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let pool = std::sync::Arc::new(pool);
        let values: Vec<u64> = (0..10_000).map(|i| (i * 7919) % 1013).collect();
        let sum = pool.install(|| with_pool_awake(|| values.par_iter().sum::<u64>()));
        assert_eq!(sum, values.iter().sum::<u64>());
        // A panic inside must reach the caller, and the waiting threads must stop (a pool
        // left spinning would never finish the scope): bounded by a timeout, not a hang.
        let (sender, receiver) = std::sync::mpsc::channel();
        let panicking = std::sync::Arc::clone(&pool);
        std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                panicking.install(|| with_pool_awake(|| panic!("a step failed")))
            }));
            sender.send(outcome.is_err()).unwrap();
        });
        let panicked = receiver.recv_timeout(std::time::Duration::from_secs(30));
        assert_eq!(
            panicked,
            Ok(true),
            "the panic did not come back from the pool"
        );
        let again = pool.install(|| with_pool_awake(|| values.par_iter().max().copied()));
        assert_eq!(again, values.iter().max().copied());
    }

    #[test]
    fn gathered_rows_are_the_ordered_rows_of_x_and_y_on_every_split_and_storage() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (n, features, outputs) = (700, 131, 3);
        let floats = Array2::from_shape_fn((n, features), |_| rng.random_range(-1.0f32..1.0));
        let eight_bit = Array2::from_shape_fn((n, features), |_| {
            f32::from(rng.random_range(0..=255u8)) / 255.0
        });
        let y = Array2::from_shape_fn((n, outputs), |_| rng.random_range(0.0f32..1.0));
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        for (x, stored_as_bytes) in [(floats, false), (eight_bit, true)] {
            let inputs = Inputs::of(x.view());
            assert_eq!(matches!(inputs, Inputs::Bytes(_)), stored_as_bytes);
            // 1 row, fewer rows than a split, and batches split once and several times (odd
            // halves included).
            for rows in [1, 100, 251, 699] {
                assert_eq!(rows * features >= GATHER_SPLIT_MIN, rows >= 251);
                let mut input = Array2::from_elem((rows, features), f32::NAN);
                let mut targets = Array2::from_elem((rows, outputs), f32::NAN);
                let batch = &order[n - rows..];
                let row_of = |i: usize| batch[i];
                gather_rows(
                    &inputs,
                    y.view(),
                    input.view_mut(),
                    targets.view_mut(),
                    0,
                    &row_of,
                );
                let bits = |row: ArrayView1<f32>| row.mapv(f32::to_bits);
                for (i, &source) in batch.iter().enumerate() {
                    let what = format!("{rows} rows, bytes {stored_as_bytes}: row {i}");
                    assert_eq!(bits(input.row(i)), bits(x.row(source)), "x {what}");
                    assert_eq!(bits(targets.row(i)), bits(y.row(source)), "y {what}");
                }
            }
        }
    }

    #[test]
    fn inputs_are_kept_as_bytes_only_when_every_value_is_one() {
        let bytes: Vec<f32> = (0..=255u8).map(|k| f32::from(k) / 255.0).collect();
        let stored = |values: &[f32]| match Inputs::of(
            ArrayView2::from_shape((2, values.len() / 2), values).unwrap(),
        ) {
            Inputs::Bytes(b) => Some(b.iter().copied().collect::<Vec<u8>>()),
            Inputs::F32(_) => None,
        };
        assert_eq!(stored(&bytes), Some((0..=255).collect()));
        for (at, other) in [
            (0, -0.0),
            (3, 0.5),
            (255, 1.0 + f32::EPSILON),
            (7, 3.0 / 255.0 + 1e-7),
        ] {
            let mut values = bytes.clone();
            values[at] = other;
            assert_eq!(stored(&values), None, "{other} at {at} is not a byte / 255");
        }
    }
}
