//! `persodesk sim-encoder`: a simulated MSR206-family encoder on a pseudo-terminal. Prints the
//! device path to pass to `--encoder`, serves until Ctrl-C / SIGTERM, then prints what it saw.

use std::time::Duration;

use clap::Args;

use super::Exit;
use crate::sim::encoder::{SimConfig, SimFault, run_sim_encoder_blocking};

/// Arguments of `sim-encoder`.
#[derive(Debug, Args)]
pub struct SimEncoderArgs {
    /// Failure to simulate: none, write-error (status 31 on every write), bad-swipe (status 39 on
    /// every write), bad-swipe:N (the first N writes), no-swipe (writes and reads never answered),
    /// silent (no command answered), corrupt:T (track T, 1-3, read back with one character changed).
    #[arg(long, default_value = "none", value_parser = parse_fault)]
    fail: SimFault,
    /// Milliseconds the simulated operator takes to swipe.
    #[arg(long, default_value_t = 20)]
    swipe_delay_ms: u64,
}

/// Parses a `--fail` value.
fn parse_fault(s: &str) -> Result<SimFault, String> {
    let fault = match s {
        "none" => SimFault::None,
        "write-error" => SimFault::WriteError,
        "bad-swipe" => SimFault::BadSwipes(u32::MAX),
        "no-swipe" => SimFault::NoSwipe,
        "silent" => SimFault::Silent,
        _ => {
            if let Some(n) = s.strip_prefix("bad-swipe:") {
                let n = n
                    .parse()
                    .map_err(|_| format!("bad-swipe:N needs a count, got {n:?}"))?;
                SimFault::BadSwipes(n)
            } else if let Some(t) = s.strip_prefix("corrupt:") {
                match t.parse::<u8>() {
                    Ok(t @ 1..=3) => SimFault::CorruptReadBack(t),
                    _ => return Err(format!("corrupt:T needs a track 1, 2 or 3, got {t:?}")),
                }
            } else {
                return Err(format!(
                    "unknown failure {s:?}: use none, write-error, bad-swipe, bad-swipe:N, \
                     no-swipe, silent or corrupt:T"
                ));
            }
        }
    };
    Ok(fault)
}

/// Runs `sim-encoder` until interrupted.
pub fn run(args: &SimEncoderArgs) -> Exit {
    let config = SimConfig {
        swipe_delay: Duration::from_millis(args.swipe_delay_ms),
        fault: args.fail,
    };
    match run_sim_encoder_blocking(config, &mut std::io::stdout()) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("error: simulated encoder: {e}");
            Exit::DeviceUnavailable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_fault;
    use crate::sim::encoder::SimFault;

    #[test]
    fn fault_names() {
        assert_eq!(parse_fault("none"), Ok(SimFault::None));
        assert_eq!(parse_fault("write-error"), Ok(SimFault::WriteError));
        assert_eq!(parse_fault("bad-swipe"), Ok(SimFault::BadSwipes(u32::MAX)));
        assert_eq!(parse_fault("bad-swipe:2"), Ok(SimFault::BadSwipes(2)));
        assert_eq!(parse_fault("no-swipe"), Ok(SimFault::NoSwipe));
        assert_eq!(parse_fault("silent"), Ok(SimFault::Silent));
        assert_eq!(parse_fault("corrupt:3"), Ok(SimFault::CorruptReadBack(3)));
        assert!(parse_fault("corrupt:4").is_err());
        assert!(parse_fault("bad-swipe:x").is_err());
        assert!(parse_fault("explode").is_err());
    }
}
