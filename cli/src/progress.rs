//! Progress on stderr for the long commands. indicatif draws to stderr only
//! when it is a terminal: piped or redirected, nothing is written.

use std::fmt;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// A bar of `len` steps, labelled `what`.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{msg} [{wide_bar}] {human_pos}/{human_len} ({rate}, {eta} left)")
        .map(|style| {
            style.progress_chars("=> ").with_key("rate", |state: &ProgressState, out: &mut dyn fmt::Write| {
                let _ = write!(out, "{:.0}/s", state.per_sec());
            })
        })
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(what.to_owned())
}

/// A spinner with the time elapsed, for work whose length is not known in
/// advance or that the library does without reporting its progress.
pub fn spinner(what: String) -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let spinner =
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style).with_message(what);
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}
