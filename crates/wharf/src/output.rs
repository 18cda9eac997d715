//! Standard output of the subcommands. `print!` panics when the reader has gone away
//! (`wharf cache ls --json | head -1`): Rust ignores SIGPIPE, so the next write fails with
//! EPIPE, and `unsafe_code = "forbid"` rules out restoring the signal. Output goes through a
//! writer here instead, and a closed pipe is a quiet end: the reader took what it wanted.

use std::io::{self, Write};
use std::process::ExitCode;

/// Writes `text` to stdout and flushes it, so a closed pipe shows now rather than at exit.
pub(crate) fn print(text: &str) -> io::Result<()> {
    write_to(&mut io::stdout().lock(), text)
}

pub(crate) fn write_to(w: &mut impl Write, text: &str) -> io::Result<()> {
    w.write_all(text.as_bytes())?;
    w.flush()
}

/// Whether an output error means the reader closed the pipe.
pub(crate) fn is_closed(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// The exit code of a subcommand whose output failed: success when the reader closed the pipe,
/// else a failure named on stderr (a full disk, a revoked terminal).
pub(crate) fn failed(command: &str, e: &io::Error) -> ExitCode {
    if is_closed(e) {
        return ExitCode::SUCCESS;
    }
    // stderr may be gone too; there is nobody left to tell then.
    let _ = writeln!(io::stderr(), "{command}: writing the output: {e}");
    ExitCode::FAILURE
}

/// Prints `text` and ends the subcommand: `code` if it was written, else as [`failed`] says.
pub(crate) fn finish(command: &str, text: &str, code: ExitCode) -> ExitCode {
    match print(text) {
        Ok(()) => code,
        Err(e) => failed(command, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe whose reader has gone.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_a_quiet_end_other_errors_are_not() {
        let e = write_to(&mut Closed, "line\n").expect_err("EPIPE");
        assert!(is_closed(&e));
        assert_eq!(failed("wharf test", &e), ExitCode::SUCCESS);
        let full = io::Error::from(io::ErrorKind::StorageFull);
        assert!(!is_closed(&full));
        assert_eq!(failed("wharf test", &full), ExitCode::FAILURE);
        let mut buf = Vec::new();
        write_to(&mut buf, "line\n").expect("written");
        assert_eq!(buf, b"line\n");
    }
}
