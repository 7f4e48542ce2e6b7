//! Per-kernel GPU time through timestamp queries (`wgrad train --profile`): while profiling,
//! every dispatch is recorded in its own compute pass whose beginning and end write a
//! timestamp (`Features::TIMESTAMP_QUERY` is all it takes), and the times are summed per
//! kernel family. Each submission is read back before the next, so a profiled run is slower
//! than a plain one; the table's times are the kernels' own.

use super::device::GpuContext;
use super::kernels::Dispatch;
use crate::error::{Result, WgradError};
use std::collections::BTreeMap;

/// Most timestamps one query set holds (wgpu's `QUERY_SET_MAX_QUERIES`).
const MAX_QUERIES: u32 = 4096;

/// Calls and GPU time of one kernel family.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FamilyTime {
    pub calls: u64,
    pub seconds: f64,
}

/// What a profiled run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// By kernel family (matmul, loss, gather, optimizer, sum_squares, probabilities).
    pub families: BTreeMap<&'static str, FamilyTime>,
    /// Training steps profiled.
    pub train_steps: u64,
    /// Wall-clock seconds of the profiled submissions (including the read-backs).
    pub wall_seconds: f64,
}

impl Profile {
    pub fn gpu_seconds(&self) -> f64 {
        self.families.values().map(|f| f.seconds).sum()
    }

    /// The table `--profile` prints: per family its calls, total ms, ms per training step and
    /// share of all kernel time.
    pub fn table(&self) -> String {
        let total = self.gpu_seconds();
        let steps = self.train_steps.max(1) as f64;
        let mut rows: Vec<_> = self.families.iter().collect();
        rows.sort_by(|a, b| b.1.seconds.total_cmp(&a.1.seconds));
        let mut out = format!(
            "{:<14} {:>8} {:>11} {:>9} {:>7}\n",
            "kernel family", "calls", "total ms", "ms/step", "% time"
        );
        for (name, f) in rows {
            out += &format!(
                "{:<14} {:>8} {:>11.2} {:>9.3} {:>6.1}%\n",
                name,
                f.calls,
                f.seconds * 1e3,
                f.seconds * 1e3 / steps,
                100.0 * f.seconds / total.max(f64::MIN_POSITIVE)
            );
        }
        out += &format!(
            "{:<14} {:>8} {:>11.2} {:>9.3} {:>6.1}%\n",
            "all",
            self.families.values().map(|f| f.calls).sum::<u64>(),
            total * 1e3,
            total * 1e3 / steps,
            100.0
        );
        out += &format!(
            "{} training steps; kernel time {:.3} ms per step (the rest of a step's wall time is \
             submission and synchronisation)",
            self.train_steps,
            total * 1e3 / steps
        );
        out
    }
}

/// The query set and buffers of a profiled run, and what it measured so far.
pub struct Profiler {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period: f64,
    pub profile: Profile,
}

impl Profiler {
    /// `None` when the device cannot write timestamps.
    pub fn new(ctx: &GpuContext) -> Option<Self> {
        if !ctx
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
        {
            return None;
        }
        let bytes = u64::from(MAX_QUERIES) * 8;
        let buffer = |label, usage| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Some(Profiler {
            queries: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: MAX_QUERIES,
            }),
            resolved: buffer(
                "resolved timestamps",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            readback: buffer(
                "timestamp read-back",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            period: f64::from(ctx.queue.get_timestamp_period()),
            profile: Profile::default(),
        })
    }

    /// Steps of `dispatches_per_step` dispatches that fit in one query set.
    pub fn steps_per_submission(dispatches_per_step: usize) -> usize {
        (MAX_QUERIES as usize / (2 * dispatches_per_step.max(1))).max(1)
    }

    /// Records `dispatch` for `step` in a pass of its own, timestamped at queries `2·slot`
    /// and `2·slot + 1`.
    pub fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        dispatch: &Dispatch,
        step: usize,
        slot: u32,
    ) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(dispatch.family),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &self.queries,
                beginning_of_pass_write_index: Some(2 * slot),
                end_of_pass_write_index: Some(2 * slot + 1),
            }),
        });
        dispatch.record(&mut pass, step);
    }

    /// Submits `encoder` (whose passes used slots 0..families.len()), waits, and adds each
    /// slot's time to its family.
    pub fn submit(
        &mut self,
        ctx: &GpuContext,
        mut encoder: wgpu::CommandEncoder,
        families: &[&'static str],
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let count = 2 * families.len() as u32;
        if count > 0 {
            encoder.resolve_query_set(&self.queries, 0..count, &self.resolved, 0);
            encoder.copy_buffer_to_buffer(
                &self.resolved,
                0,
                &self.readback,
                0,
                u64::from(count) * 8,
            );
        }
        ctx.queue.submit([encoder.finish()]);
        if count == 0 {
            return Ok(());
        }
        let slice = self.readback.slice(..u64::from(count) * 8);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        ctx.wait()?;
        {
            let mapped = slice
                .get_mapped_range()
                .map_err(|e| WgradError::Gpu(format!("reading timestamps: {e}")))?;
            let ticks: &[u64] = bytemuck::cast_slice(&mapped);
            for (family, pair) in families.iter().zip(ticks.chunks(2)) {
                let entry = self.profile.families.entry(family).or_default();
                entry.calls += 1;
                entry.seconds += pair[1].saturating_sub(pair[0]) as f64 * self.period * 1e-9;
            }
        }
        self.readback.unmap();
        self.profile.wall_seconds += started.elapsed().as_secs_f64();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_sums_and_shares_per_family() {
        let mut profile = Profile {
            train_steps: 10,
            ..Default::default()
        };
        profile.families.insert(
            "matmul",
            FamilyTime {
                calls: 30,
                seconds: 0.03,
            },
        );
        profile.families.insert(
            "optimizer",
            FamilyTime {
                calls: 10,
                seconds: 0.01,
            },
        );
        let table = profile.table();
        let matmul = table.lines().find(|l| l.starts_with("matmul")).unwrap();
        assert!(matmul.contains("30.00") && matmul.contains("3.000") && matmul.contains("75.0%"));
        let all = table.lines().find(|l| l.starts_with("all")).unwrap();
        assert!(all.contains(" 40 ") && all.contains("40.00") && all.contains("100.0%"));
        assert!(
            table.find("matmul").unwrap() < table.find("optimizer").unwrap(),
            "slowest first"
        );
    }
}
