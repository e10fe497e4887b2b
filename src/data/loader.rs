//! Parallel batch loading: worker threads decode, transform, tokenize and collate whole
//! batches; at most `prefetch` batches are in flight, and batches come out in order.
//!
//! Everything random is keyed, so the output depends neither on the number of workers nor on
//! the batch size, and a resumed run draws what the uninterrupted run drew: the epoch's order
//! by `(seed, epoch)`; each sample's false draws, augmentation and MLM masking (and the MIM
//! noise the trainer draws for it) by `(seed, epoch, sample index)`.
//! A sample whose image cannot be decoded is handled as [`LoaderConfig::unreadable`] says:
//! in training it is replaced by another sample, as upstream's `BaseDataset.get_suite`
//! retries with a random index (the replacement is drawn from the sample's own stream, so
//! it depends neither on the workers nor on the ranks, and a resumed run draws it again); in
//! evaluation it is left out of its batch (a batch may then be empty); with `strict_images`
//! it is an error. Each unreadable image is logged once per process with `log::warn!` (file,
//! table row, reason), and every occurrence is recorded in [`Loader::unreadable`]. An
//! unreadable false image is redrawn.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Receiver, Sender};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::collate::{Batch, Collator, Sample};
use super::dataset::{Dataset, DatasetList};
use super::image_io::decode_rgba;
use super::tokenizer::TextTokenizer;
use super::unreadable::log_once;
pub use super::unreadable::{Unreadable, UnreadableImage, REPLACEMENT_TRIES};
use super::transforms::Transform;
use crate::{Error, Result};

/// Attempts at drawing a readable false image before giving up on the sample.
const FALSE_IMAGE_TRIES: usize = 10;

/// Loader settings.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Shuffle the sample order each epoch.
    pub shuffle: bool,
    /// Base seed of every random draw.
    pub seed: u64,
    /// Worker threads; 0 builds each batch in the thread that asks for it (PyTorch's
    /// DataLoader with `num_workers=0`: loading in the main process).
    pub workers: usize,
    /// Batches in flight at most.
    pub prefetch: usize,
    /// False images per sample (ITM: 1).
    pub draw_false_image: usize,
    /// False texts per sample (IRTR training: 15).
    pub draw_false_text: usize,
    /// Drop a final incomplete batch.
    pub drop_last: bool,
    /// Samples whose image cannot be decoded.
    pub unreadable: Unreadable,
}

/// What a worker needs to turn sample indices into a batch.
struct Worker {
    dataset: Arc<DatasetList>,
    tokenizer: Arc<TextTokenizer>,
    transforms: Vec<Transform>,
    collator: Arc<Collator>,
    config: LoaderConfig,
    epoch: u64,
    unreadable: Arc<Mutex<Vec<UnreadableImage>>>,
}

impl Worker {
    /// Decodes and transforms the image of table `row` of `ds` with every transform.
    fn images(&self, ds: &Dataset, row: usize, rng: &mut ChaCha8Rng) -> Result<Vec<tch::Tensor>> {
        let name = format!("{}, row {row}", ds.table.path.display());
        let img = decode_rgba(ds.image_bytes(row)?, &name)?;
        self.transforms.iter().map(|t| t.apply(&img, rng)).collect()
    }

    fn sample(&self, index: usize) -> Result<Sample> {
        let rng = &mut sample_rng(self.config.seed, self.epoch, index, Purpose::Draws);
        let all = &self.dataset;
        let (ds, local) = all.locate(index);
        let (row, j) = ds.index[local];
        let images = self.images(ds, row, rng)?;
        let mut false_images = Vec::with_capacity(self.config.draw_false_image);
        for _ in 0..self.config.draw_false_image {
            let mut drawn = None;
            for _ in 0..FALSE_IMAGE_TRIES {
                let (fds, flocal) = all.locate(rng.gen_range(0..all.len()));
                if let Ok(views) = self.images(fds, fds.index[flocal].0, rng) {
                    drawn = Some(views);
                    break;
                }
            }
            false_images.push(drawn.ok_or_else(|| Error::Image {
                name: ds.table.path.display().to_string(),
                reason: format!("no readable false image in {FALSE_IMAGE_TRIES} draws"),
            })?);
        }
        let false_texts = (0..self.config.draw_false_text)
            .map(|_| {
                let (fds, flocal) = all.locate(rng.gen_range(0..all.len()));
                self.tokenizer.encode(fds.text(flocal))
            })
            .collect::<Result<_>>()?;
        Ok(Sample {
            index,
            seed: sample_rng(self.config.seed, self.epoch, index, Purpose::Later).gen(),
            images,
            false_images,
            text: self.tokenizer.encode(ds.text(local))?,
            false_texts,
            vqa: ds.vqa.get(row).and_then(|r| r.get(j)).cloned(),
            cls_label: ds.cls_labels.get(row).and_then(|r| r.get(j)).copied(),
        })
    }

    /// Sample `index`, or what [`LoaderConfig::unreadable`] puts in its place when its image
    /// cannot be decoded (`None`: left out). Other errors fail the batch.
    fn sample_or_replacement(&self, index: usize) -> Result<Option<Sample>> {
        let mut draws = sample_rng(self.config.seed, self.epoch, index, Purpose::Replace);
        let mut current = index;
        for _ in 0..=REPLACEMENT_TRIES {
            let (file, row, reason) = match self.sample(current) {
                Ok(s) => return Ok(Some(s)),
                Err(Error::Image { name, reason }) if self.config.unreadable != Unreadable::Fail => {
                    let (ds, local) = self.dataset.locate(current);
                    (ds.table.path.display().to_string(), ds.index[local].0, format!("{name}: {reason}"))
                }
                Err(e) => return Err(e),
            };
            let replacement = (self.config.unreadable == Unreadable::Replace).then(|| draws.gen_range(0..self.dataset.len()));
            let u = UnreadableImage { file, index: current, row, reason, replacement };
            log_once(&u);
            self.unreadable.lock().map_err(|_| Error::input("loader", "worker panicked"))?.push(u);
            match replacement {
                Some(next) => current = next,
                None => return Ok(None),
            }
        }
        Err(Error::input("batch", format!("sample {index}: {REPLACEMENT_TRIES} replacement draws in a row have unreadable images ({} is mostly unreadable)", self.dataset.locate(index).0.table.path.display())))
    }

    /// Builds one batch (empty when every sample was left out).
    fn batch(&self, indices: &[usize]) -> Result<Option<Batch>> {
        let mut samples = Vec::with_capacity(indices.len());
        for &index in indices {
            samples.extend(self.sample_or_replacement(index)?);
        }
        for ds in &self.dataset.sets {
            ds.table.release_pages();
        }
        if samples.is_empty() {
            return Ok(None);
        }
        self.collator.collate(samples).map(Some)
    }
}

/// An in-order iterator over one epoch's batches, built by worker threads.
pub struct Loader {
    jobs: Option<Sender<(usize, Vec<usize>)>>,
    results: Receiver<(usize, Result<Option<Batch>>)>,
    batches: Vec<Vec<usize>>,
    next_out: usize,
    next_job: usize,
    ready: BTreeMap<usize, Result<Option<Batch>>>,
    prefetch: usize,
    unreadable: Arc<Mutex<Vec<UnreadableImage>>>,
    handles: Vec<JoinHandle<()>>,
    shard: Shard,
    /// `workers` 0: the batches are built here, on demand.
    inline: Option<Arc<Worker>>,
}

/// Which batches of the epoch this process builds (all of them outside multi-process runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Consecutive batches dealt out together (an optimizer step's; or `world` in evaluation).
    pub group: usize,
    /// This process's rank.
    pub rank: usize,
    /// The number of processes.
    pub world: usize,
}

impl Shard {
    /// Every batch: one process.
    pub const ALL: Shard = Shard { group: 1, rank: 0, world: 1 };

    /// Whether batch `n` is built here: its place in its group of `group` batches, modulo
    /// `world`, is `rank` (round robin from the group's first batch).
    pub fn owns(&self, n: usize) -> bool {
        (n % self.group.max(1)) % self.world.max(1) == self.rank
    }
}

/// What a sample's stream is drawn for.
#[derive(Clone, Copy)]
enum Purpose {
    /// False images and texts, augmentation.
    Draws = 0,
    /// The seed the sample carries for MLM masking and MIM noise.
    Later = 1,
    /// The samples that replace it when its image is unreadable.
    Replace = 2,
}

/// The random stream of sample `index` in `epoch`.
fn sample_rng(seed: u64, epoch: u64, index: usize, purpose: Purpose) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((epoch << 40) ^ ((index as u64) << 2) ^ purpose as u64);
    rng
}

impl Loader {
    /// Starts the workers for `epoch` of `dataset` (one dataset, or several read as one).
    pub fn new(
        dataset: impl Into<Arc<DatasetList>>,
        tokenizer: Arc<TextTokenizer>,
        transforms: Vec<Transform>,
        collator: Collator,
        config: LoaderConfig,
        epoch: u64,
    ) -> Result<Loader> {
        if config.batch_size == 0 || (config.workers > 0 && config.prefetch == 0) || transforms.is_empty() {
            return Err(Error::Config("loader: batch_size, prefetch (with workers) and transforms must be non-zero".into()));
        }
        let dataset: Arc<DatasetList> = dataset.into();
        let mut order: Vec<usize> = (0..dataset.len()).collect();
        if config.shuffle {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(config.seed ^ epoch.rotate_left(17)));
        }
        let mut batches: Vec<Vec<usize>> = order.chunks(config.batch_size).map(<[usize]>::to_vec).collect();
        if config.drop_last && batches.last().is_some_and(|b| b.len() < config.batch_size) {
            batches.pop();
        }
        let (job_tx, job_rx) = unbounded::<(usize, Vec<usize>)>();
        let (result_tx, result_rx) = unbounded();
        let unreadable = Arc::new(Mutex::new(Vec::new()));
        let worker = Arc::new(Worker {
            dataset,
            tokenizer,
            transforms,
            collator: Arc::new(collator),
            config: config.clone(),
            epoch,
            unreadable: Arc::clone(&unreadable),
        });
        let handles = (0..config.workers)
            .map(|_| {
                let (worker, jobs, results) = (Arc::clone(&worker), job_rx.clone(), result_tx.clone());
                std::thread::spawn(move || {
                    crate::runtime::serial_tensor_ops_on_this_thread();
                    for (n, indices) in jobs {
                        let batch = worker.batch(&indices);
                        if results.send((n, batch)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Ok(Loader {
            jobs: Some(job_tx),
            results: result_rx,
            batches,
            next_out: 0,
            next_job: 0,
            ready: BTreeMap::new(),
            prefetch: config.prefetch,
            unreadable,
            handles,
            shard: Shard::ALL,
            inline: (config.workers == 0).then_some(worker),
        })
    }

    /// Number of batches in the epoch.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether the epoch has no batches.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Starts the epoch at batch `n` (a resumed run): the batches before it are never built.
    /// Every sample's randomness is keyed by its index, so batch `n` is the batch an
    /// uninterrupted epoch would have built.
    pub fn skip_to(&mut self, n: usize) {
        self.next_out = n.min(self.batches.len());
        self.next_job = self.next_out;
    }

    /// Builds only `shard`'s batches from here on: iterating yields those; [`Loader::next_slot`]
    /// also reports the others' places.
    pub fn set_shard(&mut self, shard: Shard) {
        self.shard = shard;
    }

    /// The next batch place: its number and its batch, or `None` in place of a batch another
    /// process builds (never built here) or of one whose every sample was left out.
    pub fn next_slot(&mut self) -> Option<(usize, Option<Result<Batch>>)> {
        let n = self.next_out;
        if n >= self.batches.len() {
            return None;
        }
        if !self.shard.owns(n) {
            self.next_out += 1;
            return Some((n, None));
        }
        self.next_built().map(|b| (n, b.transpose()))
    }

    /// The places of the next optimizer step, as [`Self::next_slot`] gives them: `accumulate`
    /// of them, fewer where the epoch ends; empty when none are left. Reading a whole step
    /// before running it lets the trainer cut its texts to one width ([`Batch::cut_text`]).
    pub fn next_step(&mut self, accumulate: usize) -> Result<Vec<(usize, Option<Batch>)>> {
        let mut slots = Vec::with_capacity(accumulate);
        while slots.len() < accumulate.max(1) {
            let Some((n, batch)) = self.next_slot() else { break };
            slots.push((n, batch.transpose()?));
            if n + 1 == self.batches.len() {
                break;
            }
        }
        Ok(slots)
    }

    /// The number of the next batch place (`next` skips the places of other processes).
    pub fn position(&self) -> usize {
        self.next_out
    }

    /// The unreadable images met so far (each occurrence: replaced or left out).
    pub fn unreadable(&self) -> Vec<UnreadableImage> {
        self.unreadable.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Loader {
    /// Builds (or waits for) the batch at `next_out`, which this process owns, and moves on.
    fn next_built(&mut self) -> Option<Result<Option<Batch>>> {
        if let Some(worker) = &self.inline {
            let indices = std::mem::take(&mut self.batches[self.next_out]);
            self.next_out += 1;
            return Some(worker.batch(&indices));
        }
        let jobs = self.jobs.as_ref()?;
        // the prefetch window spans `prefetch` of this process's batches
        let window = self.prefetch * self.shard.world.max(1);
        while self.next_job < self.batches.len() && self.next_job < self.next_out + window {
            if self.shard.owns(self.next_job) {
                let indices = std::mem::take(&mut self.batches[self.next_job]);
                if jobs.send((self.next_job, indices)).is_err() {
                    return Some(Err(Error::input("loader", "worker threads stopped")));
                }
            }
            self.next_job += 1;
        }
        while !self.ready.contains_key(&self.next_out) {
            match self.results.recv() {
                Ok((n, batch)) => {
                    self.ready.insert(n, batch);
                }
                Err(_) => return Some(Err(Error::input("loader", "worker threads stopped"))),
            }
        }
        let batch = self.ready.remove(&self.next_out);
        self.next_out += 1;
        batch
    }
}

/// This process's non-empty batches, in order.
impl Iterator for Loader {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        loop {
            while self.next_out < self.batches.len() && !self.shard.owns(self.next_out) {
                self.next_out += 1;
            }
            if self.next_out >= self.batches.len() {
                return None;
            }
            match self.next_built()? {
                Ok(None) => continue,
                other => return other.transpose(),
            }
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.jobs = None;
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}
