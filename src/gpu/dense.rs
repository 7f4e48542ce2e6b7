//! A dense layer's products on the GPU, as matmul launches: the forward pass, the weight and
//! bias gradients, and the gradient of the layer's input. Where a weight is larger than one
//! storage binding it is split by output units into blocks of rows, each bound on its own:
//! the forward pass and the weight gradient then run one product per block, each writing its
//! own columns of the output (rows of the gradient); the input gradient, a sum over the
//! output units, runs one product per block accumulating into the same result, the
//! activation's derivative applied by the last.

use super::device::GpuContext;
use super::kernels::{Dispatch, Epilogue, Kernels, MatmulDims, Product, View};
use super::matmul::{MATMUL_CONFIGS, MatmulChoice};
use super::texture::{Texels, TextureCopy};
use crate::cpu::ops::MatmulForm;
use crate::error::Result;
use crate::model::{Activation, ParamLayout};
use std::ops::Range;

/// The blocks of rows (output units) of a `[units, fan_in]` weight: `0..units` where it fits
/// one storage binding, else blocks of at most one binding each, every block starting at an
/// element offset the adapter can bind at and at a multiple of 4 rows (so that vec4 reads
/// stay aligned).
pub fn weight_blocks(
    ctx: &GpuContext,
    name: &str,
    units: usize,
    fan_in: usize,
) -> Result<Vec<Range<usize>>> {
    let limit = ctx.binding_limit() as usize / 4;
    if units * fan_in <= limit {
        return Ok(std::iter::once(0..units).collect());
    }
    // Tensors start at multiples of ParamLayout::ALIGN elements, which every adapter can bind
    // at; a block's offset within its tensor must be a multiple of the adapter's alignment.
    let align =
        (ctx.limits.min_storage_buffer_offset_alignment as usize / 4).clamp(1, ParamLayout::ALIGN);
    // Rows per block: a multiple of 4 and of align / gcd(fan_in, align).
    let step = lcm(4, align / gcd(fan_in, align));
    // The smallest block must fit (else the error names it); then `rows` ≥ `step`.
    ctx.check_size(
        &format!("{name} [{units}, {fan_in}], split into blocks of {step} rows,"),
        (step * fan_in * 4) as u64,
    )?;
    let rows = limit / fan_in / step * step;
    Ok((0..units)
        .step_by(rows)
        .map(|start| start..units.min(start + rows))
        .collect())
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

/// A dense layer's weight `[units, fan_in]` and bias `[units]` in one buffer (its parameters
/// or their gradients), with the weight's blocks from [`weight_blocks`].
#[derive(Clone, Copy)]
pub struct DenseTensors<'a> {
    pub weight: View<'a>,
    pub bias: View<'a>,
    pub fan_in: usize,
    pub blocks: &'a [Range<usize>],
    /// The weight is stored in the tiled layout ([`tiles_gradient`]; gradients only).
    pub tiled: bool,
}

impl<'a> DenseTensors<'a> {
    fn units(&self) -> usize {
        self.bias.len
    }

    /// Rows `rows` of the weight, with the weight's texture copy where they are all of it.
    fn weight_rows(&self, rows: &Range<usize>) -> View<'a> {
        View {
            buffer: self.weight.buffer,
            offset: self.weight.offset + rows.start * self.fan_in,
            len: rows.len() * self.fan_in,
            texture: self.weight.texture.filter(|_| rows.len() == self.units()),
        }
    }
}

/// Which layer's dropout mask an epilogue applies (or undoes), and at what rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerDropout {
    pub layer: usize,
    pub rate: f32,
}

/// y = f(x·Wᵀ + b), then `dropout`: x `[batch, fan_in]`, y `[batch, units]`; block by block,
/// each writing its columns of y.
pub fn forward<'a>(
    params: DenseTensors<'a>,
    batch: usize,
    activation: Activation,
    dropout: LayerDropout,
    x: View<'a>,
    y: View<'a>,
) -> Vec<Product<'a>> {
    params
        .blocks
        .iter()
        .map(|rows| Product {
            form: MatmulForm::ABt,
            epilogue: Epilogue::BiasActivation(activation),
            dims: MatmulDims {
                layer: dropout.layer as u32,
                dropout_rate: dropout.rate,
                ldc: params.units() as u32,
                c_col0: rows.start as u32,
                ..MatmulDims::new(batch, rows.len(), params.fan_in)
            },
            a: x,
            b: params.weight_rows(rows),
            aux: Some(params.bias),
            c: y,
            sums: None,
        })
        .collect()
}

/// Whether a weight gradient can be stored tiled (common.wgsl's `tiled_index`): the weight
/// is one block (the product writes it whole) and its rows are whole packs of 8, so that the
/// optimizer finds each pack of parameters' gradient in one piece.
pub fn tiles_gradient(fan_in: usize, blocks: &[Range<usize>]) -> bool {
    blocks.len() == 1 && fan_in.is_multiple_of(8)
}

/// Weights of at least this many elements (1 MiB, a core's L2 cache here) get tiled
/// gradients on adapters that want them: on llvmpipe the tiles cut the weight gradient's
/// time by about a fifth where its result leaves the cache (784-800-10's first layer), while
/// the optimizer, reading the gradient out of row order, loses about half that back, and on
/// a weight that fits the cache (784-128-10's) only the loss is left.
pub const TILED_GRADIENT_ELEMENTS: usize = 1 << 18;

/// dW = dzᵀ·x and db = Σ_rows dz into `grads`, in one pass per block: dz `[batch, units]`,
/// x `[batch, fan_in]`; dW in the tiled layout where `grads.tiled`.
pub fn grad_params<'a>(
    grads: DenseTensors<'a>,
    batch: usize,
    dz: View<'a>,
    x: View<'a>,
) -> Vec<Product<'a>> {
    grads
        .blocks
        .iter()
        .map(|rows| Product {
            form: MatmulForm::AtB,
            epilogue: Epilogue::WithRowSums,
            dims: MatmulDims {
                lda: grads.units() as u32,
                a_col0: rows.start as u32,
                row_sums: rows.start as u32,
                c_tiled: u32::from(grads.tiled),
                ..MatmulDims::new(rows.len(), grads.fan_in, batch)
            },
            a: dz,
            b: x,
            aux: None,
            c: grads.weight_rows(rows),
            sums: Some(grads.bias),
        })
        .collect()
}

/// Whether a layer's weight gradient runs from the transposes of its operands' texture
/// copies ([`grad_params_from_transposes`]) rather than as dzᵀ·x: where the weight is whole,
/// the batch, its inputs and its units are multiples of 4 (the copies transposed texel for
/// texel), and the configuration chosen for Aᵀ·B has no subgroup kernel (which reads the
/// copies of dz and x as they are, about as fast as A·Bᵀ reads the transposes, and saves
/// transposing them). The caller knows the operands have copies.
pub fn transposed_weight_gradient(
    choice: &MatmulChoice,
    batch: usize,
    units: usize,
    fan_in: usize,
    blocks: &[Range<usize>],
) -> bool {
    let config = choice.get(MatmulForm::AtB, (units, fan_in, batch));
    blocks.len() == 1
        && [batch, units, fan_in].iter().all(|v| v.is_multiple_of(4))
        && !MATMUL_CONFIGS[config].subgroup
}

/// [`grad_params`] from the transposes dzᵀ `[units, batch]` and xᵀ `[fan_in, batch]`, as the
/// A·Bᵀ product, which reads both along the batch in vec4s: on software adapters, from
/// texture copies, it runs about twice as fast as dzᵀ·x. Only the operands' textures are
/// read (every read is a vec4 read); their buffers are bound as placeholders.
pub fn grad_params_transposed<'a>(
    grads: DenseTensors<'a>,
    batch: usize,
    dz_t: View<'a>,
    x_t: View<'a>,
) -> Vec<Product<'a>> {
    vec![Product {
        form: MatmulForm::ABt,
        epilogue: Epilogue::WithRowSums,
        dims: MatmulDims {
            c_tiled: u32::from(grads.tiled),
            ..MatmulDims::new(grads.units(), grads.fan_in, batch)
        },
        a: dz_t,
        b: x_t,
        aux: None,
        c: grads.weight,
        sums: Some(grads.bias),
    }]
}

/// A layer operand for [`grad_params_from_transposes`]: its buffer, the texture copy of it,
/// and the texture its transpose goes to.
pub type TransposedOperand<'a> = (&'a wgpu::Buffer, &'a TextureCopy, &'a Texels);

/// The dispatches transposing x `[batch, fan_in]` and dz `[batch, units]` from their texture
/// copies (transpose.wgsl), and the product of [`grad_params_transposed`] that reads the
/// transposes: what the scheduler records and the parity tests run.
pub fn grad_params_from_transposes<'a>(
    kernels: &mut Kernels,
    ctx: &GpuContext,
    step: &wgpu::Buffer,
    grads: DenseTensors<'a>,
    batch: usize,
    x: TransposedOperand<'a>,
    dz: TransposedOperand<'a>,
) -> Result<(Vec<Dispatch>, Vec<Product<'a>>)> {
    let mut transposes = Vec::with_capacity(2);
    for ((_, copy, target), width) in [(x, grads.fan_in), (dz, grads.units())] {
        let shape = (batch, width);
        transposes.push(kernels.transpose(ctx, step, shape, copy.view(), &target.view)?);
    }
    // The buffers are bound as placeholders: only the textures are read.
    let read = |(buffer, _, target): TransposedOperand<'a>| View {
        texture: Some(&target.view),
        ..View::whole(buffer)
    };
    let products = grad_params_transposed(grads, batch, read(dz), read(x));
    Ok((transposes, products))
}

/// dx = (dz·W) ⊙ f'(input), with `dropout` (the input's) undone: dz `[batch, units]`, input
/// and dx `[batch, fan_in]`, `activation` the one that made the input. The blocks' products
/// add up in dx; the last applies the derivative.
pub fn grad_input<'a>(
    params: DenseTensors<'a>,
    batch: usize,
    dz: View<'a>,
    input: View<'a>,
    activation: Activation,
    dropout: LayerDropout,
    dx: View<'a>,
) -> Vec<Product<'a>> {
    let last = params.blocks.len() - 1;
    params
        .blocks
        .iter()
        .enumerate()
        .map(|(i, rows)| Product {
            form: MatmulForm::AB,
            epilogue: if i == last {
                Epilogue::ActivationGrad(activation)
            } else {
                Epilogue::None
            },
            dims: MatmulDims {
                layer: dropout.layer as u32,
                dropout_rate: dropout.rate,
                lda: params.units() as u32,
                a_col0: rows.start as u32,
                accumulate: u32::from(i > 0),
                ..MatmulDims::new(batch, params.fan_in, rows.len())
            },
            a: dz,
            b: params.weight_rows(rows),
            aux: Some(input),
            c: dx,
            sums: None,
        })
        .collect()
}
