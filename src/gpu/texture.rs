//! Texture copies of matmul operands. On llvmpipe (lavapipe) a load from a storage buffer at
//! an address that differs per invocation is a loop over the SIMD lanes with a branch per
//! lane, while a texel load from a read-only storage texture is one branch-free 128-bit load
//! per lane; the matmul kernel reading its vec4s from textures runs 2–3× faster there
//! (measured at the MNIST shapes and at 1024³). So on software adapters the scheduler keeps a
//! texture copy of each operand whose rows are whole vec4s — the layer inputs, the output
//! gradients and the weights — refreshed by a buffer-to-texture copy (a memcpy on llvmpipe)
//! after each write, and matmul.wgsl reads A and B from them (`A_TEXTURE`, `B_TEXTURE`), and
//! the input gradient's epilogue its layer input (`AUX_TEXTURE`).
//! [`Texels`] are textures in the same layout that kernels write: transpose.wgsl's
//! transposes of the layer inputs and output gradients, from which the weight gradient runs
//! in the faster A·Bᵀ form where the matmul configuration has no subgroup kernel (which
//! reads the copies as they are: `dense::transposed_weight_gradient`).
//!
//! Layout: texel i of the copy holds elements 4i..4i+3 of the buffer range, at
//! (i % [`TEXTURE_WIDTH`], i / [`TEXTURE_WIDTH`]) of an rgba32float texture; its rows of
//! 4 KiB meet wgpu's 256-byte row alignment for copies.

use super::device::GpuContext;
use super::kernels::View;
use crate::error::Result;

/// Texels per texture row (`TEXTURE_WIDTH` in common.wgsl).
pub const TEXTURE_WIDTH: u32 = 256;

const TEXEL_BYTES: u32 = 16;

/// Whether a layer's products (batch × units × fan_in multiply-adds each) gain from texture
/// copies of their operands: the copies cost about as much as the gain on small ones.
fn worth_it(batch: usize, units: usize, fan_in: usize) -> bool {
    batch * units * fan_in >= super::matmul::SMALL_PRODUCT
}

/// Whether a layer's input and its output gradient get texture copies, with copies `on`:
/// where its products are worth it (`worth_it`) and the matrix's rows are whole texels.
pub fn operand_copies(on: bool, batch: usize, units: usize, fan_in: usize) -> [bool; 2] {
    let textured = on && worth_it(batch, units, fan_in);
    [
        textured && fan_in.is_multiple_of(4),
        textured && units.is_multiple_of(4),
    ]
}

/// Whether `len` elements starting at element `offset` can have a texture copy: whole texels,
/// at a copyable offset, within the adapter's largest texture.
pub fn fits(ctx: &GpuContext, offset: usize, len: usize) -> bool {
    let texels = len / 4;
    len.is_multiple_of(4)
        && len > 0
        && (offset * 4).is_multiple_of(TEXEL_BYTES as usize)
        && texels.div_ceil(TEXTURE_WIDTH as usize) <= ctx.limits.max_texture_dimension_2d as usize
}

/// An rgba32float texture laid out as the texels of a flat vector (see above), readable and
/// writable by kernels as a storage texture and filled by copies.
#[derive(Clone)]
pub struct Texels {
    texture: wgpu::Texture,
    pub view: wgpu::TextureView,
}

impl Texels {
    /// A texture for `len` elements (a multiple of 4 that [`fits`]), named `what`.
    pub fn new(ctx: &GpuContext, what: &str, len: usize) -> Result<Self> {
        let texels = (len / 4) as u32;
        let size = wgpu::Extent3d {
            width: TEXTURE_WIDTH,
            height: texels.div_ceil(TEXTURE_WIDTH).max(1),
            depth_or_array_layers: 1,
        };
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let texture = ctx.device.create_texture(&wgpu::TextureDescriptor {
            label: Some(what),
            size,
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::STORAGE_BINDING
                | wgpu::TextureUsages::COPY_DST
                | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let bytes = u64::from(size.height) * u64::from(TEXTURE_WIDTH * TEXEL_BYTES);
        ctx.out_of_memory_error(scope, what, bytes)?;
        Ok(Texels {
            view: texture.create_view(&Default::default()),
            texture,
        })
    }

    /// Records a copy of the texture into `buffer` (at least as large as the texture's rows
    /// of 4 KiB), which then holds the flat vector in order.
    pub fn record_read(&self, encoder: &mut wgpu::CommandEncoder, buffer: &wgpu::Buffer) {
        let size = self.texture.size();
        encoder.copy_texture_to_buffer(
            self.texture.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(TEXTURE_WIDTH * TEXEL_BYTES),
                    rows_per_image: None,
                },
            },
            size,
        );
    }

    /// Bytes [`Texels::record_read`] writes.
    pub fn bytes(&self) -> u64 {
        u64::from(self.texture.height()) * u64::from(TEXTURE_WIDTH * TEXEL_BYTES)
    }
}

/// A texture copy of a range of a buffer, and the copy that refreshes it.
#[derive(Clone)]
pub struct TextureCopy {
    buffer: wgpu::Buffer,
    /// Byte offset of the range in the buffer.
    offset: u64,
    texels: u32,
    pub target: Texels,
}

impl TextureCopy {
    /// A texture copy of `source` where `wanted` and it [`fits`], named after `what`.
    pub fn of(ctx: &GpuContext, wanted: bool, what: &str, source: View) -> Result<Option<Self>> {
        if !(wanted && fits(ctx, source.offset, source.len)) {
            return Ok(None);
        }
        Ok(Some(TextureCopy {
            buffer: source.buffer.clone(),
            offset: (source.offset * 4) as u64,
            texels: (source.len / 4) as u32,
            target: Texels::new(ctx, &format!("texture copy of {what}"), source.len)?,
        }))
    }

    /// Texture copies of `sources` (where `wanted`, they have none yet, and they fit),
    /// filled now: for operands that do not change after (the parity tests', the
    /// benchmarks', the autotuner's).
    pub fn filled(
        ctx: &GpuContext,
        wanted: bool,
        sources: &[View],
    ) -> Result<Vec<Option<TextureCopy>>> {
        let copies = sources
            .iter()
            .map(|&source| {
                Self::of(
                    ctx,
                    wanted && source.texture.is_none(),
                    "an operand",
                    source,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for copy in copies.iter().flatten() {
            copy.record(&mut encoder);
        }
        ctx.queue.submit([encoder.finish()]);
        Ok(copies)
    }

    /// The texture, for [`View::with_texture`].
    pub fn view(&self) -> &wgpu::TextureView {
        &self.target.view
    }

    /// Records the copy of the buffer range into the texture: the whole rows, then the
    /// partial last one.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        let row_bytes = u64::from(TEXTURE_WIDTH * TEXEL_BYTES);
        let (rows, rest) = (self.texels / TEXTURE_WIDTH, self.texels % TEXTURE_WIDTH);
        let mut copy = |first_row: u32, width: u32, height: u32| {
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &self.buffer,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: self.offset + u64::from(first_row) * row_bytes,
                        bytes_per_row: Some(TEXTURE_WIDTH * TEXEL_BYTES),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: &self.target.texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: first_row,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: 1,
                },
            );
        };
        if rows > 0 {
            copy(0, TEXTURE_WIDTH, rows);
        }
        if rest > 0 {
            copy(rows, rest, 1);
        }
    }
}
