// optimizer.wgsl — one optimizer step on one parameter tensor, in place.
//
// g = clip·grad + l1·sign(w) + 2·l2·w (the penalties are 0 for biases; clip[0] is 1 or the
// gradient-clipping factor of reduce.wgsl's clip_factor), then by OPTIMIZER:
//   0 SGD:       w -= lr·g
//   1 momentum:  v = μ·v + g;  w -= lr·v
//   2 Nesterov:  v = μ·v + g;  w -= lr·(g + μ·v)
//   3 RMSprop:   s = ρ·s + (1-ρ)·g²;  w -= lr·g / (√s + ε)
//   4 Adam:      m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²;
//                w -= lr·(m / (1-β1ᵗ)) / (√(v / (1-β2ᵗ)) + ε)
// The Rust twin is `cpu::ops::optimizer_update`. state1 holds v, s or m; state2 Adam's v.
// Dispatch: one invocation per element; workgroups of 64 spread over (x, y) when the tensor
// needs more than 65535 workgroups (see flat_index).

override OPTIMIZER: u32 = 0u;

struct Hyper {
    len: u32,
    l1: f32,
    l2: f32,
    h1: f32,  // μ, ρ or β1
    h2: f32,  // β2
    eps: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<uniform> hyper: Hyper;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> params: array<f32>;
@group(0) @binding(4) var<storage, read_write> state1: array<f32>;
@group(0) @binding(5) var<storage, read_write> state2: array<f32>;
@group(0) @binding(6) var<storage, read> clip: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= hyper.len) {
        return;
    }
    let w = params[i];
    let g = clip[0] * grads[i] + hyper.l1 * sign(w) + 2.0 * hyper.l2 * w;
    let lr = step.learning_rate;
    switch OPTIMIZER {
        case 0u: {
            params[i] = w - lr * g;
        }
        case 1u: {
            let v = hyper.h1 * state1[i] + g;
            state1[i] = v;
            params[i] = w - lr * v;
        }
        case 2u: {
            let v = hyper.h1 * state1[i] + g;
            state1[i] = v;
            params[i] = w - lr * (g + hyper.h1 * v);
        }
        case 3u: {
            let s = hyper.h1 * state1[i] + (1.0 - hyper.h1) * g * g;
            state1[i] = s;
            params[i] = w - lr * g / (sqrt(s) + hyper.eps);
        }
        default: {
            let m = hyper.h1 * state1[i] + (1.0 - hyper.h1) * g;
            let v = hyper.h2 * state2[i] + (1.0 - hyper.h2) * g * g;
            state1[i] = m;
            state2[i] = v;
            params[i] = w - lr * (m / step.bias_correction1) / (sqrt(v / step.bias_correction2) + hyper.eps);
        }
    }
}
