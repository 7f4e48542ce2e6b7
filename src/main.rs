//! The `wgrad` binary: parses the command line and reports errors; the work is in
//! `wgrad::cli`.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
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
