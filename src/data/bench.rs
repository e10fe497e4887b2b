//! Throughput of the image pipeline (file → decode → transform → normalized tensor), for
//! `m3ae data bench` and `bench/pipeline.sh`.
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::image_io::{open_rgba, Format};
use super::transforms::Transform;
use crate::{Error, Result};

/// Measured throughput of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Images processed.
    pub samples: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Worker threads used.
    pub threads: usize,
}

impl Throughput {
    /// Samples per second.
    pub fn per_second(&self) -> f64 {
        self.samples as f64 / self.seconds.max(f64::EPSILON)
    }
}

/// The decodable image files directly inside `dir`, sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if !path.is_file() {
            continue;
        }
        let mut head = [0u8; 136];
        let n = std::io::Read::read(&mut std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?, &mut head)
            .map_err(|e| Error::io(&path, e))?;
        if Format::sniff(&head[..n]).is_some() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Runs `transform` on every file `repeats` times with `threads` workers.
pub fn measure(files: &[PathBuf], transform: Transform, threads: usize, repeats: usize) -> Result<Throughput> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| Error::Config(format!("thread pool: {e}")))?;
    let jobs: Vec<(usize, &PathBuf)> = (0..repeats).flat_map(|_| files.iter()).enumerate().collect();
    let start = Instant::now();
    pool.install(|| {
        jobs.par_iter().try_for_each(|&(i, path)| -> Result<()> {
            let img = open_rgba(path)?;
            drop(transform.apply(&img, &mut ChaCha8Rng::seed_from_u64(i as u64))?);
            Ok(())
        })
    })?;
    Ok(Throughput { samples: jobs.len(), seconds: start.elapsed().as_secs_f64(), threads: threads.max(1) })
}
