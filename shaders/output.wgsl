// output.wgsl — the output stage: the output activation fused with the loss.
//
// Inputs are the output layer's logits z [B, N] and targets y [B, N] (row-major). The output
// activation p = f(z) is OUTPUT_ACTIVATION: softmax for cross-entropy, sigmoid for binary
// cross-entropy, the declared one for MSE. Entry points:
//   loss_and_grad  for each row r < step.rows: row_stats[2r] = the row's loss,
//                  row_stats[2r+1] = 1 if the predicted class matches the target's, and
//                  grad[r, :] = ∂(mean batch loss)/∂z. Padding rows (r ≥ step.rows) get 0.
//                    MSE: Σ(p-y)²/N,                       g = 2(p-y)/(rows·N) through f'
//                    BCE: Σ(max(z,0) - z·y + ln(1+e^-|z|))/N, g = (σ(z)-y)/(rows·N)
//                    CE:  Σ y·(logsumexp(z) - z),            g = (p·Σy - y)/rows
//                  Then metrics[0] += Σ loss, metrics[1] += Σ correct, metrics[2] += rows:
//                  the running loss and accuracy counts, accumulated on the GPU until the
//                  host reads them (a fixed-order tree sum, the same run to run). In
//                  training, the first step whose Σ loss is NaN or infinite is kept in
//                  metrics[3] (0: none yet) and that sum in metrics[4], so a diverging run
//                  is named to the step at the next read-back, without a read per step.
//                  metrics holds u32 words; the sums are f32 bits.
//                  Dispatch: exactly one workgroup, (1, 1, 1); its 256 threads take the rows
//                  in turn.
//   probabilities  out[r, :] = p for every row. Dispatch: one invocation per row,
//                  workgroups (ceil(B/64), 1, 1).
// A class is argmax over the row (first on ties), or (v ≥ 0.5) for a single output.

override LOSS: u32 = 0u;              // 0 MSE, 1 binary CE, 2 categorical CE
override OUTPUT_ACTIVATION: u32 = 0u;

struct Dims {
    n: u32,      // outputs per row; the loops take it from row_width() instead
    batch: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> dims: Dims;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;       // grad or probabilities
@group(0) @binding(5) var<storage, read_write> row_stats: array<f32>; // [B, 2]
@group(0) @binding(6) var<storage, read_write> metrics: array<u32>;   // [5] or more

const METRIC_LOSS: u32 = 0u;
const METRIC_CORRECT: u32 = 1u;
const METRIC_ROWS: u32 = 2u;
const METRIC_BAD_STEP: u32 = 3u;
const METRIC_BAD_LOSS: u32 = 4u;

fn add_to_metric(index: u32, value: f32) {
    metrics[index] = bitcast<u32>(bitcast<f32>(metrics[index]) + value);
}

// Outputs per row. Read from the binding's length rather than the uniform: lavapipe (Mesa
// 22.3) leaks memory on every dispatch of this kernel when its loops are bounded by a
// uniform value (measured: ~0.8 MB per training step on MNIST).
fn row_width() -> u32 {
    return arrayLength(&logits) / dims.batch;
}

struct RowSoftmax {
    max: f32,
    sum: f32,
}

fn row_softmax(base: u32) -> RowSoftmax {
    var s = RowSoftmax(-3.402823e38, 0.0);
    for (var j = 0u; j < row_width(); j++) {
        s.max = max(s.max, logits[base + j]);
    }
    for (var j = 0u; j < row_width(); j++) {
        s.sum += exp(logits[base + j] - s.max);
    }
    return s;
}

fn probability(z: f32, s: RowSoftmax) -> f32 {
    if (OUTPUT_ACTIVATION == ACT_SOFTMAX) {
        return exp(z - s.max) / s.sum;
    }
    return activate(OUTPUT_ACTIVATION, z);
}

fn log1p_exp_neg_abs(z: f32) -> f32 {
    let e = exp(-abs(z));
    return select(log(1.0 + e), e - 0.5 * e * e, e < 1e-4);
}

// Loss, gradient and row_stats of row r; returns (loss, correct), 0 for padding rows.
fn row_loss(r: u32) -> vec2<f32> {
    let base = r * row_width();
    if (r >= step.rows) {
        for (var j = 0u; j < row_width(); j++) {
            out[base + j] = 0.0;
        }
        row_stats[2u * r] = 0.0;
        row_stats[2u * r + 1u] = 0.0;
        return vec2<f32>(0.0);
    }
    let s = row_softmax(base);
    let rows = f32(step.rows);
    let n = f32(row_width());

    // Predicted and target classes.
    var predicted = 0u;
    var target_class = 0u;
    if (row_width() == 1u) {
        predicted = select(0u, 1u, probability(logits[base], s) >= 0.5);
        target_class = select(0u, 1u, targets[base] >= 0.5);
    } else {
        var best_p = probability(logits[base], s);
        var best_y = targets[base];
        for (var j = 1u; j < row_width(); j++) {
            let p = probability(logits[base + j], s);
            if (p > best_p) {
                best_p = p;
                predicted = j;
            }
            if (targets[base + j] > best_y) {
                best_y = targets[base + j];
                target_class = j;
            }
        }
    }
    let correct = select(0.0, 1.0, predicted == target_class);
    row_stats[2u * r + 1u] = correct;

    var loss = 0.0;
    if (LOSS == 0u) {
        var dot = 0.0; // Σ g·p, for the softmax Jacobian
        for (var j = 0u; j < row_width(); j++) {
            let p = probability(logits[base + j], s);
            let diff = p - targets[base + j];
            loss += diff * diff;
            dot += 2.0 * diff / (rows * n) * p;
        }
        for (var j = 0u; j < row_width(); j++) {
            let p = probability(logits[base + j], s);
            let g = 2.0 * (p - targets[base + j]) / (rows * n);
            if (OUTPUT_ACTIVATION == ACT_SOFTMAX) {
                out[base + j] = p * (g - dot);
            } else {
                out[base + j] = g * activation_grad(OUTPUT_ACTIVATION, p);
            }
        }
        loss /= n;
    } else if (LOSS == 1u) {
        for (var j = 0u; j < row_width(); j++) {
            let z = logits[base + j];
            let y = targets[base + j];
            loss += max(z, 0.0) - z * y + log1p_exp_neg_abs(z);
            out[base + j] = (sigmoid(z) - y) / (rows * n);
        }
        loss /= n;
    } else {
        let log_sum_exp = s.max + log(s.sum);
        var target_mass = 0.0;
        for (var j = 0u; j < row_width(); j++) {
            target_mass += targets[base + j];
        }
        for (var j = 0u; j < row_width(); j++) {
            let z = logits[base + j];
            let y = targets[base + j];
            loss += y * (log_sum_exp - z);
            out[base + j] = (exp(z - s.max) / s.sum * target_mass - y) / rows;
        }
    }
    row_stats[2u * r] = loss;
    return vec2<f32>(loss, correct);
}

const THREADS: u32 = 256u;
var<workgroup> partial: array<vec2<f32>, THREADS>;

@compute @workgroup_size(256)
fn loss_and_grad(@builtin(local_invocation_index) thread: u32) {
    // Rows from the binding's length, not a uniform (see row_width).
    let batch = arrayLength(&row_stats) / 2u;
    var sum = vec2<f32>(0.0);
    for (var r = thread; r < batch; r += THREADS) {
        sum += row_loss(r);
    }
    partial[thread] = sum;
    workgroupBarrier();
    for (var width = THREADS / 2u; width > 0u; width /= 2u) {
        if (thread < width) {
            partial[thread] += partial[thread + width];
        }
        workgroupBarrier();
    }
    if (thread == 0u) {
        let loss = partial[0].x;
        add_to_metric(METRIC_LOSS, loss);
        add_to_metric(METRIC_CORRECT, partial[0].y);
        add_to_metric(METRIC_ROWS, f32(step.rows));
        if (step.training != 0u && metrics[METRIC_BAD_STEP] == 0u && !is_finite(loss)) {
            metrics[METRIC_BAD_STEP] = step.step;
            metrics[METRIC_BAD_LOSS] = bitcast<u32>(loss);
        }
    }
}

@compute @workgroup_size(64)
fn probabilities(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= dims.batch) {
        return;
    }
    let base = r * row_width();
    let s = row_softmax(base);
    for (var j = 0u; j < row_width(); j++) {
        out[base + j] = probability(logits[base + j], s);
    }
}
