//! A bounded in-process mutation loop (the same inputs as `fuzz/fuzz_targets/`): real pickles
//! and archives, mutated, must decode or fail with an error, never panic or hang.
use std::time::Instant;

use m3ae::checkpoint::read_checkpoint;
use m3ae::checkpoint::pickle::parse;
use m3ae::checkpoint::zip_archive::TorchArchive;

use super::util::{fixture, root, scratch};

/// xorshift64*: a tiny deterministic generator, so a failure reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Interesting bytes: pickle opcodes that build, reference or pop, and boundary values.
const DICTIONARY: &[u8] = b"()]}tlaeusRQbqhjr0\x81\x85\x86\x87\x88\x89\x8a\x8c\x93\x94\x95.\xff\x00\x7f\x80";

/// One to four random edits: flip, overwrite with a dictionary byte, insert, delete, splice.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len());
        match rng.below(5) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.below(8),
            1 if !v.is_empty() => v[at] = DICTIONARY[rng.below(DICTIONARY.len())],
            2 => v.insert(at, DICTIONARY[rng.below(DICTIONARY.len())]),
            3 if !v.is_empty() => {
                v.remove(at);
            }
            _ => {
                let (from, len) = (rng.below(v.len()), 1 + rng.below(16));
                let chunk: Vec<u8> = v[from..(from + len).min(v.len())].to_vec();
                v.splice(at..at, chunk);
            }
        }
    }
    v
}

fn pickle_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for path in [fixture("tensors.pt"), fixture("clip_tiny.pt"), root().join("parity/tiny-b/model.ckpt")] {
        let a = TorchArchive::open(&path).unwrap();
        seeds.push(a.record("data.pkl").unwrap().to_vec());
    }
    seeds.push(std::fs::read(fixture("os_system.pkl")).unwrap());
    seeds
}

/// Runs `f` on each of `n` mutations; returns the decoded and refused counts, and fails
/// naming every mutation (by its iteration, which reproduces it) that panicked.
fn never_panics<T, E>(n: usize, mut input: impl FnMut(usize) -> Vec<u8>, f: impl Fn(&[u8]) -> Result<T, E>, mut on_err: impl FnMut(E)) -> (usize, usize) {
    let (mut ok, mut err, mut panicked) = (0, 0, Vec::new());
    for i in 0..n {
        let data = input(i);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&data))) {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                err += 1;
                on_err(e);
            }
            Err(_) => panicked.push(i),
        }
    }
    assert!(panicked.is_empty(), "{} of {n} mutations panicked (iterations {:?})", panicked.len(), &panicked[..panicked.len().min(10)]);
    (ok, err)
}

#[test]
fn mutated_pickles_never_panic() {
    let seeds = pickle_seeds();
    for s in &seeds {
        assert!(parse(s).is_ok(), "an unmutated seed must decode");
    }
    let (mut rng, start, n) = (Rng(0x9e37_79b9_7f4a_7c15), Instant::now(), 20_000);
    let input = |i: usize| {
        let seed = &seeds[i % seeds.len()];
        // the Lightning pickle is 84 kB: mutate a prefix-truncated copy most of the time to keep the loop fast
        let cut = if seed.len() > 4096 && !i.is_multiple_of(8) { &seed[..4096] } else { &seed[..] };
        mutate(&mut rng, cut)
    };
    let mut unnamed = Vec::new();
    let (ok, err) = never_panics(n, input, parse, |e: String| {
        // the machine's errors name the byte offset; the resolver's name what was wrong
        if e.trim().is_empty() || (e.starts_with("pickle byte") && !e["pickle byte ".len()..].starts_with(|c: char| c.is_ascii_digit())) {
            unnamed.push(e);
        }
    });
    println!("pickle mutations: {n} in {:.1?} ({ok} decoded, {err} refused)", start.elapsed());
    assert!(unnamed.is_empty(), "errors that say nothing: {:?}", &unnamed[..unnamed.len().min(5)]);
    assert!(err > n / 10 && ok > 0, "mutations should both keep and break pickles ({ok} kept, {err} broken)");
}

#[test]
fn mutated_archives_never_panic() {
    let seed = std::fs::read(fixture("tensors.pt")).unwrap();
    let dir = scratch("fuzz-archives");
    let path = dir.join("m.pt");
    std::fs::write(&path, &seed).unwrap();
    assert!(read_checkpoint(&path).is_ok(), "the unmutated archive must read");
    let (mut rng, start, n) = (Rng(0xdead_beef_cafe_f00d), Instant::now(), 2_000);
    let input = |_| mutate(&mut rng, &seed);
    let read = |data: &[u8]| {
        std::fs::write(&path, data).unwrap();
        read_checkpoint(&path)
    };
    let mut unnamed = 0;
    let (ok, err) = never_panics(n, input, read, |e| unnamed += usize::from(!e.to_string().contains("m.pt")));
    println!("archive mutations: {n} in {:.1?} ({ok} still read, {err} refused)", start.elapsed());
    assert_eq!(unnamed, 0, "every refusal names the file");
    assert!(ok > 0 && err > 0, "mutations should both keep and break archives ({ok} kept, {err} broken)");
}
