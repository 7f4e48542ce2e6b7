//! The `wgrad` binary: parses the command line and reports errors; the work is in
//! `wgrad::cli`.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    quiet_mesa_device_select();
    match wgrad::cli::run(wgrad::cli::Cli::from_command_line()) {
        Ok(()) => match wgrad::output_error() {
            None => ExitCode::SUCCESS,
            Some(e) => {
                let _ = writeln!(std::io::stderr(), "wgrad: writing the output failed: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            // Not eprintln!, which panics where standard error is closed.
            let _ = writeln!(std::io::stderr(), "wgrad: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Mesa's device-select Vulkan layer prints `error: XDG_RUNTIME_DIR is invalid or not set in
/// the environment.` whenever adapters are listed on a machine without a desktop session
/// (servers, containers, CI), even for a run that ends on the CPU. It only orders the
/// adapters, which wgrad ranks itself, so where that variable is missing the layer is turned
/// off (`NODEVICE_SELECT=1`, unless the user set it).
fn quiet_mesa_device_select() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none()
        && std::env::var_os("NODEVICE_SELECT").is_none()
    {
        // SAFETY: the first thing the program does, before any other thread exists.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}
