//! The rule every GPU test and benchmark follows: no adapter is a failure with a clear message,
//! unless the GPU parts were skipped on purpose with `WGRAD_SKIP_GPU=1`, which is then said.

/// What to do when no adapter is found.
pub const NO_ADAPTER_HELP: &str = "no GPU adapter: install Mesa's lavapipe (apt-get install \
     mesa-vulkan-drivers libvulkan1) or set WGRAD_SKIP_GPU=1 to skip the GPU parts explicitly";

/// True when `WGRAD_SKIP_GPU=1` is set; then prints `SKIPPED <what>` on stderr.
pub fn skip_requested(what: &str) -> bool {
    let skip = std::env::var("WGRAD_SKIP_GPU").is_ok_and(|v| v == "1");
    if skip {
        note!("SKIPPED {what}: WGRAD_SKIP_GPU=1 is set");
    }
    skip
}
