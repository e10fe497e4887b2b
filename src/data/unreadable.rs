//! Samples whose image cannot be decoded: what the loader does with them (upstream's
//! `get_suite` retries with a random index), and the record of each occurrence.
use std::collections::BTreeSet;
use std::sync::Mutex;

/// Replacement draws for a sample with an unreadable image before the batch fails. Upstream
/// retries without end; a split where this many draws in a row fail is mostly unreadable.
pub const REPLACEMENT_TRIES: usize = 64;

/// What the loader does with a sample whose image cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Put another sample in its place, drawn from the sample's own stream (training, as
    /// upstream's `get_suite`).
    Replace,
    /// Leave it out of its batch (evaluation: no sample is counted twice).
    Skip,
    /// Fail the batch with the decoder's error (`strict_images`).
    Fail,
}

/// A sample whose image could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableImage {
    /// The dataset file.
    pub file: String,
    /// Sample index.
    pub index: usize,
    /// Table row holding the image.
    pub row: usize,
    /// Decoder message.
    pub reason: String,
    /// The sample put in its place ([`Unreadable::Replace`]); `None` where it was left out.
    pub replacement: Option<usize>,
}

/// The images already named in this process's log: each is logged once.
static LOGGED: Mutex<BTreeSet<(String, usize)>> = Mutex::new(BTreeSet::new());

pub(super) fn log_once(u: &UnreadableImage) {
    let first = LOGGED.lock().map(|mut seen| seen.insert((u.file.clone(), u.row))).unwrap_or(true);
    if first {
        let what = if u.replacement.is_some() { "replacing the sample" } else { "leaving the sample out" };
        log::warn!("unreadable image: {}, row {} (sample {}): {}; {what} (logged once per image)", u.file, u.row, u.index, u.reason);
    }
}
