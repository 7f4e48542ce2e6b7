//! Chooses the matmul configuration of each form, for large and for small products, for an
//! adapter: `WGRAD_MATMUL=<name>` forces one for all; otherwise the choice is read from the
//! autotune cache, or measured on first use (every configuration of [`MATMUL_CONFIGS`] timed
//! on two fixed probe shapes per form, a few seconds on lavapipe) and written there.
//!
//! The cache is `$XDG_CACHE_HOME/wgrad/autotune.json` (else `~/.cache/wgrad/autotune.json`),
//! keyed by adapter name, driver and backend, and tied to a fingerprint of the matmul shader
//! and the configuration list, so that a changed kernel is measured again. It is replaced
//! atomically; a file that cannot be read or parsed is ignored with a warning (one per
//! process), and so is a failure to write it.

use super::device::GpuContext;
use super::kernels::{Dispatch, Kernels, Product, StepUniform, View};
use super::matmul::{FORMS, MATMUL_CONFIGS, MatmulChoice, MatmulConfig};
use super::texture::TextureCopy;
use crate::backend::StepParams;
use crate::cpu::ops::MatmulForm;
use crate::error::{Result, WgradError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// The environment variable that forces a configuration (`auto` or empty: choose).
pub const ENV: &str = "WGRAD_MATMUL";
const CACHE_FILE: &str = "autotune.json";
const CACHE_VERSION: u32 = 2;

/// The autotune cache file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheFile {
    pub version: u32,
    /// By [`adapter_key`].
    pub adapters: BTreeMap<String, CacheEntry>,
}

/// What was chosen for one adapter, and the measurements behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// [`kernel_fingerprint`] when measured.
    pub kernel: String,
    /// Configuration names for AB, ABt and AtB: large products, then small ones.
    pub choice: [String; 3],
    pub small: [String; 3],
    /// GFLOP/s of each configuration on each form's probe (AB, ABt, AtB); 0 = not finished.
    #[serde(default)]
    pub gflops: BTreeMap<String, [f64; 3]>,
    #[serde(default)]
    pub small_gflops: BTreeMap<String, [f64; 3]>,
}

impl CacheEntry {
    /// The choice, if it was measured for this kernel and names known configurations.
    fn choice(&self) -> Option<MatmulChoice> {
        if self.kernel != kernel_fingerprint() {
            return None;
        }
        let configs = |names: &[String; 3]| -> Option<[usize; 3]> {
            let mut configs = [0; 3];
            for (slot, name) in configs.iter_mut().zip(names) {
                *slot = MatmulConfig::by_name(name)?;
            }
            Some(configs)
        };
        Some(MatmulChoice {
            large: configs(&self.choice)?,
            small: configs(&self.small)?,
        })
    }
}

/// "name | driver | driver info | backend", and "| textures" where the operands are read
/// from texture copies (texture.rs): what a choice is valid for.
pub fn adapter_key(info: &wgpu::AdapterInfo, textures: bool) -> String {
    format!(
        "{} | {} | {} | {:?}{}",
        info.name,
        info.driver,
        info.driver_info,
        info.backend,
        if textures { " | textures" } else { "" }
    )
}

/// FNV-1a of the matmul shader and the configuration list.
pub fn kernel_fingerprint() -> String {
    let text = format!(
        "{}{:?}",
        include_str!("../../shaders/matmul.wgsl"),
        MATMUL_CONFIGS
    );
    let mut hash = crate::fnv::Fnv1a::new();
    hash.bytes(text.as_bytes());
    hash.hex()
}

/// `$XDG_CACHE_HOME/wgrad/autotune.json`, else `$HOME/.cache/wgrad/autotune.json`; `None`
/// when neither is set.
pub fn cache_path() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let base = absolute("XDG_CACHE_HOME").or_else(|| absolute("HOME").map(|h| h.join(".cache")))?;
    Some(base.join("wgrad").join(CACHE_FILE))
}

/// The most bytes a cache file can hold: a few kilobytes per adapter; anything larger is not
/// one of ours.
const MAX_CACHE_BYTES: u64 = 1 << 20;

/// Reads the cache; a missing file is an empty cache, and an unreadable or corrupt one too
/// (also one that is not a regular file, or too large to be a cache), with the warning to show.
pub fn load_cache(path: &Path) -> (CacheFile, Option<String>) {
    let bytes = match crate::io::read_regular_file(path, MAX_CACHE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (CacheFile::default(), None),
        Err(e) => {
            let warning = format!(
                "cannot read the matmul autotune cache {}: {e}; ignoring it",
                path.display()
            );
            return (CacheFile::default(), Some(warning));
        }
    };
    match serde_json::from_slice::<CacheFile>(&bytes) {
        Ok(cache) if cache.version == CACHE_VERSION => (cache, None),
        Ok(_) => (CacheFile::default(), None),
        Err(e) => {
            let warning = format!(
                "the matmul autotune cache {} is not valid ({e}); ignoring it",
                path.display()
            );
            (CacheFile::default(), Some(warning))
        }
    }
}

/// Replaces the cache file atomically (written under a temporary name, then renamed). Creates
/// the cache's directory and the one above it (`$HOME/.cache/wgrad`, `$XDG_CACHE_HOME/wgrad`),
/// not more: a home that does not exist (`HOME=/nonexistent`, as service accounts have) is
/// not made.
pub fn save_cache(path: &Path, cache: &CacheFile) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if let Some(home) = dir.parent().and_then(Path::parent)
        && !home.is_dir()
    {
        return Err(WgradError::io(
            home,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| WgradError::io(dir, e))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(CACHE_FILE);
    let json = serde_json::to_string_pretty(cache).expect("the cache serializes");
    crate::io::write_files_atomically(dir, &[(name, json.as_bytes())])
}

/// The configuration `WGRAD_MATMUL` forces, if any.
pub fn forced(subgroup_size: Option<u32>) -> Result<Option<MatmulChoice>> {
    match std::env::var(ENV) {
        Ok(name) if !name.is_empty() && !name.eq_ignore_ascii_case("auto") => {
            match MatmulConfig::by_name(&name) {
                Some(config) if !MATMUL_CONFIGS[config].supported(subgroup_size) => {
                    Err(WgradError::Gpu(format!(
                        "{ENV}={name}: this adapter has no subgroups of {} lanes",
                        super::matmul::SUBGROUP_LANES
                    )))
                }
                Some(config) => Ok(Some(MatmulChoice::all(config))),
                None => Err(WgradError::Gpu(format!(
                    "{ENV}={name}: no such matmul configuration (one of: auto, {})",
                    MatmulConfig::names()
                ))),
            }
        }
        _ => Ok(None),
    }
}

/// Where a matmul choice came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `WGRAD_MATMUL`.
    Forced,
    /// The autotune cache (or an earlier choice of this process).
    Cached,
    /// Measured now.
    Tuned,
    /// The default configuration: the adapter's storage-binding limit, lowered on purpose,
    /// is below the probes' size and nothing was cached.
    Default,
}

/// Choices made in this process, by adapter key (so that one process tunes once).
static CHOSEN: Mutex<BTreeMap<String, MatmulChoice>> = Mutex::new(BTreeMap::new());

/// The configuration of each form for `ctx`'s adapter: forced, cached, or measured now.
pub fn choose(ctx: &GpuContext, kernels: &mut Kernels) -> Result<MatmulChoice> {
    choose_with_source(ctx, kernels).map(|(choice, _)| choice)
}

/// [`choose`], and where the choice came from.
pub fn choose_with_source(
    ctx: &GpuContext,
    kernels: &mut Kernels,
) -> Result<(MatmulChoice, Source)> {
    if let Some(choice) = forced(ctx.subgroup_size)? {
        return Ok((choice, Source::Forced));
    }
    let key = adapter_key(&ctx.info, kernels.textures);
    let mut chosen = CHOSEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(choice) = chosen.get(&key) {
        return Ok((*choice, Source::Cached));
    }
    let path = cache_path();
    let mut cache = CacheFile::default();
    if let Some(path) = &path {
        let (loaded, warning) = load_cache(path);
        if let Some(warning) = warning {
            warn_once(&warning);
        }
        cache = loaded;
    }
    if let Some(choice) = cache.adapters.get(&key).and_then(CacheEntry::choice) {
        chosen.insert(key, choice);
        return Ok((choice, Source::Cached));
    }
    let largest_probe = FORMS
        .iter()
        .flat_map(|&form| probes(form))
        .map(|(m, n, k)| (m * k).max(k * n).max(m * n))
        .max()
        .unwrap_or(0);
    if (largest_probe * 4) as u64 > ctx.limits.max_storage_buffer_binding_size {
        return Ok((MatmulChoice::all(0), Source::Default));
    }
    let (choice, gflops, small_gflops) = tune(ctx, kernels)?;
    let names = |configs: [usize; 3]| configs.map(|c| MATMUL_CONFIGS[c].name.to_string());
    cache.version = CACHE_VERSION;
    cache.adapters.insert(
        key.clone(),
        CacheEntry {
            kernel: kernel_fingerprint(),
            choice: names(choice.large),
            small: names(choice.small),
            gflops,
            small_gflops,
        },
    );
    if let Some(path) = &path
        && let Err(e) = save_cache(path, &cache)
    {
        warn_once(&format!(
            "could not write the matmul autotune cache: {e}; it is measured again next time"
        ));
    }
    chosen.insert(key, choice);
    Ok((choice, Source::Tuned))
}

/// Prints a warning about the cache on stderr, the first time in the process only: a cache
/// that cannot be read or written stays so for every model the process makes.
fn warn_once(warning: &str) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        note!("wgrad: warning: {warning}");
    }
}

/// The probes of each form: one dense layer's products at batch 128 (512 → 512 units), and
/// small ones (batch 8, 16 → 64 units), far below
/// [`SMALL_PRODUCT`](super::matmul::SMALL_PRODUCT) multiply-adds: what a small product costs is
/// mostly the dispatch and each invocation's fixed work, which the small probe measures.
fn probes(form: MatmulForm) -> [(usize, usize, usize); 2] {
    match form {
        MatmulForm::ABt => [(128, 512, 512), (8, 64, 16)],
        MatmulForm::AtB => [(512, 512, 128), (64, 16, 8)],
        MatmulForm::AB => [(128, 512, 512), (8, 16, 64)],
    }
}

/// Seconds per run of `dispatch`, `repeats` runs recorded into one pass and submission,
/// waited for.
pub fn time_dispatch(ctx: &GpuContext, dispatch: &Dispatch, repeats: usize) -> Result<f64> {
    let started = Instant::now();
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for _ in 0..repeats {
            dispatch.record(&mut pass, 0);
        }
    }
    ctx.queue.submit([encoder.finish()]);
    ctx.wait()?;
    Ok(started.elapsed().as_secs_f64() / repeats as f64)
}

type Measured = BTreeMap<String, [f64; 3]>;

/// Times every configuration on every form's probes; the fastest of each form and size wins.
fn tune(ctx: &GpuContext, kernels: &mut Kernels) -> Result<(MatmulChoice, Measured, Measured)> {
    let step = ctx.uniform("step", &StepUniform::from(&StepParams::inference(0)));
    let empty = || -> Measured {
        MATMUL_CONFIGS
            .iter()
            .map(|c| (c.name.to_string(), [0.0; 3]))
            .collect()
    };
    let (mut gflops, mut small_gflops) = (empty(), empty());
    let mut choice = MatmulChoice::all(0);
    for form in FORMS {
        let slot = form.gpu_code() as usize;
        let [large, small] = probes(form);
        choice.large[slot] = tune_probe(ctx, kernels, &step, form, large, &mut gflops, slot)?;
        choice.small[slot] = tune_probe(ctx, kernels, &step, form, small, &mut small_gflops, slot)?;
    }
    Ok((choice, gflops, small_gflops))
}

/// The fastest configuration for `form` at `(m, n, k)`; GFLOP/s go to `gflops[·][slot]`. The
/// timings are taken in interleaved rounds (each configuration once per round, the best of the
/// rounds kept), so that a change in the machine's load mid-way favours none.
fn tune_probe(
    ctx: &GpuContext,
    kernels: &mut Kernels,
    step: &wgpu::Buffer,
    form: MatmulForm,
    (m, n, k): (usize, usize, usize),
    gflops: &mut Measured,
    slot: usize,
) -> Result<usize> {
    let flops = 2.0 * (m * n * k) as f64;
    let a = ctx.storage_from("probe a", &vec![0.5f32; m * k])?;
    let b = ctx.storage_from("probe b", &vec![0.25f32; k * n])?;
    let c = ctx.storage("probe c", m * n)?;
    // Read from texture copies as training will, where it does.
    let copies = TextureCopy::filled(ctx, kernels.textures, &[View::whole(&a), View::whole(&b)])?;
    // (configuration, dispatch, repeats per timing, best seconds per run)
    let mut candidates = Vec::new();
    let mut best_once = f64::INFINITY;
    for (config, spec) in MATMUL_CONFIGS.iter().enumerate() {
        if !spec.supported(ctx.subgroup_size) {
            continue;
        }
        let product = Product::plain(
            form,
            (m, n, k),
            View::whole(&a).with_texture(copies[0].as_ref()),
            View::whole(&b).with_texture(copies[1].as_ref()),
            View::whole(&c),
        );
        let dispatch = kernels.matmul_with(ctx, config, step, &product)?;
        // One run to warm up (lavapipe compiles a kernel on its first dispatch), one to size
        // the timed runs (about 20 ms each); configurations far behind the best so far are not
        // timed further.
        time_dispatch(ctx, &dispatch, 1)?;
        let once = time_dispatch(ctx, &dispatch, 1)?;
        best_once = best_once.min(once);
        if once <= 3.0 * best_once {
            let repeats = ((0.02 / once) as usize).clamp(1, 256);
            candidates.push((config, dispatch, repeats, once));
        }
    }
    for _round in 0..3 {
        for (_, dispatch, repeats, best) in candidates.iter_mut() {
            *best = best.min(time_dispatch(ctx, dispatch, *repeats)?);
        }
    }
    let mut fastest = (0, f64::INFINITY);
    for (config, _, _, seconds) in &candidates {
        gflops
            .get_mut(MATMUL_CONFIGS[*config].name)
            .expect("every configuration")[slot] = flops / seconds / 1e9;
        if *seconds < fastest.1 {
            fastest = (*config, *seconds);
        }
    }
    Ok(fastest.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wgrad-autotune-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entry() -> CacheEntry {
        CacheEntry {
            kernel: kernel_fingerprint(),
            choice: [
                "direct4x4".into(),
                "tiled64x64-4x4".into(),
                "direct8x4".into(),
            ],
            small: ["direct4x4".into(), "direct4x4".into(), "direct4x4".into()],
            gflops: BTreeMap::new(),
            small_gflops: BTreeMap::new(),
        }
    }

    #[test]
    fn the_cache_round_trips_and_is_replaced_whole() {
        let dir = temp_dir("round-trip");
        let path = dir.join("wgrad").join(CACHE_FILE);
        let mut cache = CacheFile {
            version: CACHE_VERSION,
            adapters: BTreeMap::new(),
        };
        cache
            .adapters
            .insert("gpu | driver | 1 | Vulkan".into(), entry());
        save_cache(&path, &cache).unwrap();
        let (loaded, warning) = load_cache(&path);
        assert_eq!(warning, None);
        assert_eq!(loaded, cache);
        let choice = loaded.adapters["gpu | driver | 1 | Vulkan"]
            .choice()
            .unwrap();
        assert_eq!(
            choice.describe(),
            "AB direct4x4, ABt tiled64x64-4x4, AtB direct8x4; \
             small products: AB direct4x4, ABt direct4x4, AtB direct4x4"
        );
        // The size class by multiply-adds.
        assert_eq!(choice.get(MatmulForm::ABt, (128, 512, 512)), 3);
        assert_eq!(choice.get(MatmulForm::ABt, (4, 16, 2)), 0);
        // No temporary files left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CACHE_FILE)]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupt_or_missing_cache_is_ignored() {
        let dir = temp_dir("corrupt");
        let path = dir.join(CACHE_FILE);
        assert_eq!(load_cache(&path), (CacheFile::default(), None), "missing");
        std::fs::write(&path, "{\"version\": 1, \"adapters\": {\"x\": [").unwrap();
        let (cache, warning) = load_cache(&path);
        assert_eq!(cache, CacheFile::default());
        let warning = warning.expect("a warning");
        assert!(warning.contains("not valid"), "{warning}");
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        assert!(load_cache(&path).1.is_some(), "binary garbage");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_cache_that_is_no_regular_file_is_ignored_without_reading_it() {
        let dir = temp_dir("special");
        let path = dir.join(CACHE_FILE);
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        for path in [path, fifo] {
            // On a separate thread: a FIFO would block the read, /dev/zero never end it.
            let (sender, receiver) = std::sync::mpsc::channel();
            let reading = path.clone();
            std::thread::spawn(move || sender.send(load_cache(&reading)));
            let (cache, warning) = receiver
                .recv_timeout(std::time::Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("reading {} did not return", path.display()));
            assert_eq!(cache, CacheFile::default());
            let warning = warning.expect("a warning");
            assert!(warning.contains("not a regular file"), "{warning}");
        }
        let large = dir.join("large.json");
        std::fs::File::create(&large)
            .and_then(|f| f.set_len(MAX_CACHE_BYTES + 1))
            .unwrap();
        let warning = load_cache(&large).1.expect("a warning");
        assert!(warning.contains("larger than"), "{warning}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_home_that_does_not_exist_is_not_created() {
        let dir = temp_dir("no-home");
        let home = dir.join("nonexistent");
        let path = home.join(".cache").join("wgrad").join(CACHE_FILE);
        let e = save_cache(&path, &CacheFile::default()).unwrap_err();
        assert!(e.to_string().contains("nonexistent"), "{e}");
        assert!(!home.exists(), "{} was created", home.display());
        // Below a home that exists, the cache's directories are made.
        std::fs::create_dir(&home).unwrap();
        save_cache(&path, &CacheFile::default()).unwrap();
        assert!(path.is_file());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stale_or_unknown_entries_are_measured_again() {
        let mut stale = entry();
        stale.kernel = "0000".into();
        assert_eq!(stale.choice(), None);
        let mut unknown = entry();
        unknown.choice[1] = "tiled999".into();
        assert_eq!(unknown.choice(), None);
        assert!(entry().choice().is_some());
    }
}
