//! Adapter choice and the device context: one wgpu device and queue, with the helpers that
//! create and read buffers, and wgpu's errors captured as `WgradError`s instead of panics.

use crate::error::{Result, WgradError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A graphics API wgpu can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GpuApi {
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl GpuApi {
    fn backends(self) -> wgpu::Backends {
        match self {
            GpuApi::Vulkan => wgpu::Backends::VULKAN,
            GpuApi::Metal => wgpu::Backends::METAL,
            GpuApi::Dx12 => wgpu::Backends::DX12,
            GpuApi::Gl => wgpu::Backends::GL,
        }
    }
}

impl std::str::FromStr for GpuApi {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => Ok(GpuApi::Vulkan),
            "metal" => Ok(GpuApi::Metal),
            "dx12" | "d3d12" => Ok(GpuApi::Dx12),
            "gl" | "gles" | "opengl" => Ok(GpuApi::Gl),
            _ => Err(format!(
                "unknown GPU backend '{s}' (expected vulkan, metal, dx12 or gl)"
            )),
        }
    }
}

/// Which adapter to use. Empty fields mean "any"; among the candidates the best kind wins
/// (discrete > integrated > virtual > software), native APIs before GL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdapterChoice {
    pub api: Option<GpuApi>,
    /// A case-insensitive part of the adapter's name ("llvmpipe", "RTX", "H100").
    pub name: Option<String>,
    /// Only software adapters (Mesa's lavapipe/llvmpipe, WARP).
    pub software: bool,
    /// Skip software adapters: `Device::Auto` uses the CPU backend instead, which is faster
    /// than a software rasterizer on the same cores.
    pub hardware_only: bool,
    /// Cap on the bytes one storage binding may hold, below the adapter's own limit: to
    /// mimic a smaller GPU, and to test what happens at the limit.
    pub max_storage_binding: Option<u64>,
    /// Read the matmul's operands from texture copies (see `gpu/texture.rs`): `None` leaves
    /// it to `WGRAD_TEXTURES` (`1` or `0`), else on for software adapters, where the
    /// products run 2–3× faster that way.
    pub matmul_textures: Option<bool>,
}

impl AdapterChoice {
    /// `WGRAD_BACKEND` (vulkan, metal, dx12, gl), `WGRAD_ADAPTER` (part of a name, or
    /// `software`) and `WGRAD_TEXTURES` fill in what this choice leaves open.
    pub fn with_env(mut self) -> Result<Self> {
        // Empty counts as unset, as on the command line.
        if self.api.is_none()
            && let Some(api) = backend_from_env()
        {
            self.api = Some(
                api.parse()
                    .map_err(|e| WgradError::InvalidConfig(format!("WGRAD_BACKEND: {e}")))?,
            );
        }
        if self.matmul_textures.is_none()
            && let Ok(value) = std::env::var("WGRAD_TEXTURES")
        {
            self.matmul_textures = match value.as_str() {
                "1" => Some(true),
                "0" => Some(false),
                _ => {
                    return Err(WgradError::Gpu(format!(
                        "WGRAD_TEXTURES={value}: expected 1 or 0"
                    )));
                }
            };
        }
        if self.name.is_none()
            && !self.software
            && let Ok(name) = std::env::var("WGRAD_ADAPTER")
        {
            if name.eq_ignore_ascii_case("software") {
                self.software = true;
                self.hardware_only = false;
            } else if !name.is_empty() {
                self.name = Some(name);
                self.hardware_only = false;
            }
        }
        Ok(self)
    }

    /// The APIs to search: the one asked for, else the native ones (Vulkan, Metal, DX12)
    /// and GL only when no native adapter exists (probing GL is slow and noisy).
    fn backends(&self) -> [wgpu::Backends; 2] {
        match self.api {
            Some(api) => [api.backends(), wgpu::Backends::empty()],
            None => [wgpu::Backends::PRIMARY, wgpu::Backends::GL],
        }
    }

    fn accepts(&self, info: &wgpu::AdapterInfo) -> bool {
        let name_ok = self
            .name
            .as_ref()
            .is_none_or(|n| info.name.to_lowercase().contains(&n.to_lowercase()));
        let is_software = info.device_type == wgpu::DeviceType::Cpu;
        name_ok && (!self.software || is_software) && !(self.hardware_only && is_software)
    }
}

/// `WGRAD_BACKEND`, unless unset or empty.
fn backend_from_env() -> Option<String> {
    std::env::var("WGRAD_BACKEND")
        .ok()
        .filter(|v| !v.is_empty())
}

fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    (kind, u8::from(info.backend == wgpu::Backend::Gl))
}

/// Every adapter wgpu finds, best first.
pub fn list_adapters() -> Vec<wgpu::Adapter> {
    let instance = new_instance(wgpu::Backends::all());
    let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    adapters.sort_by_key(|a| rank(&a.get_info()));
    adapters
}

fn new_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

fn choose_adapter(choice: &AdapterChoice) -> Result<wgpu::Adapter> {
    let mut adapters = Vec::new();
    for backends in choice.backends() {
        if adapters
            .iter()
            .any(|a: &wgpu::Adapter| choice.accepts(&a.get_info()))
            || backends.is_empty()
        {
            break;
        }
        let instance = new_instance(backends);
        adapters.extend(pollster::block_on(instance.enumerate_adapters(backends)));
    }
    let chosen = adapters
        .iter()
        .filter(|a| choice.accepts(&a.get_info()))
        .min_by_key(|a| rank(&a.get_info()));
    if let Some(adapter) = chosen {
        return Ok(adapter.clone());
    }
    // Those of the other APIs too: the API asked for may be the one thing wrong.
    if choice.api.is_some() {
        adapters = list_adapters();
    }
    let found: Vec<String> = adapters
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
        })
        .collect();
    let mut detail = String::new();
    if let Some(api) = choice.api {
        detail += &format!(" on {api:?}");
        if let Some(var) = backend_from_env().filter(|var| var.parse::<GpuApi>() == Ok(api)) {
            detail += &format!(" (chosen by WGRAD_BACKEND={var})");
        }
    }
    if let Some(name) = &choice.name {
        detail += &format!(" named like '{name}'");
    }
    if choice.software {
        detail += " of the software kind";
    }
    if choice.hardware_only {
        detail += " other than a software one";
    }
    if !found.is_empty() {
        detail += &format!(" (adapters present: {})", found.join(", "));
    }
    let advice = if found.is_empty() || choice.software {
        "Install a Vulkan driver (on Debian/Ubuntu the software adapter comes with \
         `apt-get install mesa-vulkan-drivers libvulkan1`)"
    } else {
        "Choose one of those (`AdapterChoice`, `--adapter`, `--backend`)"
    };
    detail += &format!(". {advice}, or train on the CPU with `Device::Cpu` (`--device cpu`)");
    Err(WgradError::NoAdapter { detail })
}

/// What wgpu's callbacks reported, kept until [`GpuContext::check`] returns it.
#[derive(Default)]
struct Faults {
    /// Validation, out-of-memory and internal errors not caught by an error scope.
    errors: Vec<String>,
    /// Why the device was lost; it stays lost, so this is never cleared.
    lost: Option<String>,
}

/// How long a read-back waits between looks at the device-lost callback's report: a lost
/// device may never answer the wait itself.
const POLL_SLICE: Duration = Duration::from_millis(200);

/// An open device with its queue and what we know of its adapter.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Whether matmul operands are read from texture copies (`AdapterChoice::matmul_textures`).
    pub textures: bool,
    /// Whether the optimizer moves its vectors, and the gather writes its batch, as 64-bit
    /// words (optimizer.wgsl, "Packing"; gather.wgsl): on for software adapters with 64-bit
    /// integers (`SHADER_INT64`), where llvmpipe's per-component loops make the update
    /// 1.4–2.1× and the gather about 1.2× faster that way; hardware GPUs load a vec4 in one
    /// instruction already.
    pub wide_words: bool,
    /// Whether large weight gradients are stored tiled where they can be
    /// (`dense::tiles_gradient`, `dense::TILED_GRADIENT_ELEMENTS`): on for software adapters,
    /// where llvmpipe writes the subgroup matmul's 8×32 tiles of C faster as one run of
    /// memory each than as eight rows.
    pub tiled_gradients: bool,
    /// The lanes of the adapter's subgroups, where it has subgroups of one fixed size.
    pub subgroup_size: Option<u32>,
    faults: Arc<Mutex<Faults>>,
}

impl GpuContext {
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        let choice = choice.clone().with_env()?;
        let adapter = choose_adapter(&choice)?;
        let info = adapter.get_info();
        // Ask for everything the adapter offers, not WebGPU's conservative defaults.
        let mut limits = adapter.limits();
        if let Some(cap) = choice.max_storage_binding {
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
        }
        // Timestamp queries, where offered, for `--profile`; subgroup operations, where
        // offered, for the matmul's subgroup configuration; 64-bit integers for `wide_words`.
        let features = adapter.features()
            & (wgpu::Features::TIMESTAMP_QUERY
                | wgpu::Features::SUBGROUP
                | wgpu::Features::SHADER_INT64);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgrad"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| WgradError::Gpu(format!("could not open '{}': {e}", info.name)))?;
        let faults = Arc::new(Mutex::new(Faults::default()));
        let sink = faults.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let kind = match e {
                wgpu::Error::OutOfMemory { .. } => "out of memory",
                wgpu::Error::Validation { .. } => "validation error",
                wgpu::Error::Internal { .. } => "internal error",
            };
            lock(&sink).errors.push(format!("{kind}: {e}"));
        }));
        let sink = faults.clone();
        let adapter_name = info.name.clone();
        device.set_device_lost_callback(move |reason, message| {
            let why = match reason {
                wgpu::DeviceLostReason::Destroyed => "destroyed",
                wgpu::DeviceLostReason::Unknown => "driver or device failure",
            };
            let detail = if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            };
            lock(&sink).lost = Some(format!("'{adapter_name}' ({why}{detail})"));
        });
        // The subgroup size, where the adapter has subgroups of one fixed size.
        let subgroup_size = (features.contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == info.subgroup_max_size)
            .then_some(info.subgroup_min_size);
        let software = info.device_type == wgpu::DeviceType::Cpu;
        Ok(GpuContext {
            device,
            queue,
            subgroup_size,
            textures: choice.matmul_textures.unwrap_or(software),
            wide_words: software && features.contains(wgpu::Features::SHADER_INT64),
            tiled_gradients: software,
            info,
            limits,
            faults,
        })
    }

    /// A line naming the adapter: "llvmpipe (LLVM 15.0.6, 256 bits) on Vulkan (Cpu)".
    pub fn describe(&self) -> String {
        format!(
            "{} on {:?} ({:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Turns what wgpu reported since the last call into a `WgradError`: `DeviceLost` once
    /// the device is lost (at every later call too), else `Gpu` with the errors.
    pub fn check(&self) -> Result<()> {
        {
            let faults = lock(&self.faults);
            if faults.errors.is_empty() && faults.lost.is_none() {
                return Ok(());
            }
        }
        // Errors may follow from a loss wgpu reports only when it next maintains the device
        // (its callback takes the lock, so it is not held here).
        let _ = self.device.poll(wgpu::PollType::Poll);
        let mut faults = lock(&self.faults);
        if let Some(lost) = faults.lost.clone() {
            // What fails after a loss only follows from it.
            faults.errors.clear();
            return Err(WgradError::DeviceLost(lost));
        }
        Err(WgradError::Gpu(
            faults.errors.drain(..).collect::<Vec<_>>().join("; "),
        ))
    }

    /// Waits until all submitted work is done. It looks at the device-lost report between
    /// short waits, so a lost device is an error however the driver behaves.
    pub fn wait(&self) -> Result<()> {
        loop {
            self.check()?;
            let wait = wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(POLL_SLICE),
            };
            match self.device.poll(wait) {
                Ok(_) => return self.check(),
                Err(wgpu::PollError::Timeout) => continue,
                Err(e) => {
                    self.check()?;
                    return Err(WgradError::Gpu(format!("waiting for the GPU: {e}")));
                }
            }
        }
    }

    /// Destroys the device as a driver reset would lose it: the device-lost callback fires
    /// and every later call fails. For tests of what a lost device leaves behind.
    #[doc(hidden)]
    pub fn destroy_device(&self) {
        self.device.destroy();
    }

    /// Fails with a message naming `what` when `bytes` exceeds what one buffer or one
    /// storage binding may hold on this adapter.
    pub fn check_size(&self, what: &str, bytes: u64) -> Result<()> {
        self.check_buffer_size(what, bytes)?;
        self.check_limit(
            what,
            bytes,
            self.limits.max_storage_buffer_binding_size,
            "storage binding",
        )
    }

    /// Fails with a message naming `what` when `bytes` exceeds what one buffer may hold.
    pub fn check_buffer_size(&self, what: &str, bytes: u64) -> Result<()> {
        self.check_limit(what, bytes, self.limits.max_buffer_size, "buffer")
    }

    fn check_limit(
        &self,
        what: &str,
        bytes: u64,
        limit: u64,
        limit_name: &'static str,
    ) -> Result<()> {
        if bytes > limit {
            return Err(WgradError::BufferTooLarge {
                what: what.to_string(),
                bytes,
                limit,
                limit_name,
                adapter: self.info.name.clone(),
            });
        }
        Ok(())
    }

    /// The most bytes one buffer bound whole may hold: the smaller of the two limits.
    pub fn binding_limit(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// A zeroed storage buffer of `len` f32/u32 elements (at least one), bound whole.
    pub fn storage(&self, what: &str, len: usize) -> Result<wgpu::Buffer> {
        let bytes = (len.max(1) * 4) as u64;
        self.check_size(what, bytes)?;
        self.create_storage(what, bytes)
    }

    /// A zeroed storage buffer of `len` elements that is bound only in parts, each within the
    /// binding limit, or only copied: it may hold up to the buffer limit.
    pub fn storage_in_parts(&self, what: &str, len: usize) -> Result<wgpu::Buffer> {
        let bytes = (len.max(1) * 4) as u64;
        self.check_buffer_size(what, bytes)?;
        self.create_storage(what, bytes)
    }

    /// Creates the buffer inside an out-of-memory error scope, so that memory the adapter
    /// cannot give is an error naming `what` now, not a failure at the first dispatch.
    fn create_storage(&self, what: &str, bytes: u64) -> Result<wgpu::Buffer> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.out_of_memory_error(scope, what, bytes)?;
        Ok(buffer)
    }

    /// Pops an out-of-memory error scope pushed before creating `what` (`bytes` large): an
    /// error naming it where the adapter could not give the memory.
    pub fn out_of_memory_error(
        &self,
        scope: wgpu::ErrorScopeGuard,
        what: &str,
        bytes: u64,
    ) -> Result<()> {
        match pollster::block_on(scope.pop()) {
            None => Ok(()),
            Some(e) => Err(WgradError::OutOfGpuMemory {
                what: what.to_string(),
                bytes,
                adapter: self.info.name.clone(),
                detail: e.to_string(),
            }),
        }
    }

    /// A storage buffer holding `data`, bound whole.
    pub fn storage_from<T: bytemuck::Pod>(&self, what: &str, data: &[T]) -> Result<wgpu::Buffer> {
        self.filled(self.storage(what, data.len())?, data)
    }

    /// A storage buffer holding `data`, bound only in parts (see [`Self::storage_in_parts`]).
    pub fn storage_in_parts_from<T: bytemuck::Pod>(
        &self,
        what: &str,
        data: &[T],
    ) -> Result<wgpu::Buffer> {
        self.filled(self.storage_in_parts(what, data.len())?, data)
    }

    fn filled<T: bytemuck::Pod>(&self, buffer: wgpu::Buffer, data: &[T]) -> Result<wgpu::Buffer> {
        self.queue
            .write_buffer(&buffer, 0, bytemuck::cast_slice(data));
        Ok(buffer)
    }

    pub fn uniform<T: bytemuck::Pod>(&self, what: &str, value: &T) -> wgpu::Buffer {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: std::mem::size_of::<T>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue
            .write_buffer(&buffer, 0, bytemuck::bytes_of(value));
        buffer
    }

    /// A uniform buffer holding `values`.
    pub fn uniform_slice<T: bytemuck::Pod>(&self, what: &str, values: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(values);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buffer, 0, bytes);
        buffer
    }

    /// Reads `len` f32 values of `buffer` starting at element `offset`, after all submitted
    /// work is done. This is the only way data comes back to the host.
    pub fn read(&self, buffer: &wgpu::Buffer, offset: usize, len: usize) -> Result<Vec<f32>> {
        let bytes = (len * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, (offset * 4) as u64, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let slice = staging.slice(..bytes);
        let (sender, receiver) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            let _ = sender.send(result);
        });
        self.wait()?;
        // Once the wait is over the mapping is done or failed; a callback that has not run
        // (a lost device may drop it) is an error, never a wait.
        let failure = match receiver.try_recv() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("the buffer was not mapped".to_string()),
        };
        if let Some(failure) = failure {
            self.check()?;
            return Err(WgradError::Gpu(format!("reading a buffer back: {failure}")));
        }
        let values = {
            let mapped = slice
                .get_mapped_range()
                .map_err(|e| WgradError::Gpu(format!("reading a buffer back: {e}")))?;
            bytemuck::cast_slice(&mapped).to_vec()
        };
        staging.unmap();
        Ok(values)
    }
}

/// The fault sink; a panic while it was held cannot leave it inconsistent (it only pushes
/// and sets), so a poisoned lock is used as is.
fn lock(faults: &Mutex<Faults>) -> std::sync::MutexGuard<'_, Faults> {
    faults
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
