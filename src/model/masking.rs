//! MAE-style image masking and patch (un)folding, as upstream's `random_masking`,
//! `patchify`, `unpatchify` and `position_embeddings.get_2d_sincos_pos_embed`.
use tch::{Device, Kind, Tensor};

/// The result of `random_masking`.
#[derive(Debug)]
pub struct MaskedTokens {
    /// [N, 1 + len_keep, D]: class token (+ pos[0]) then the kept patches (+ their pos).
    pub tokens: Tensor,
    /// [N, L]: 1 marks a removed patch, 0 a kept one, in the original patch order.
    pub mask: Tensor,
    /// [N, L]: argsort of the shuffle, to put decoder tokens back in patch order.
    pub ids_restore: Tensor,
}

/// `len_keep = int(L * (1 - mask_ratio))`, computed in double precision as Python does.
pub fn len_keep(num_patches: i64, mask_ratio: f64) -> i64 {
    (num_patches as f64 * (1.0 - mask_ratio)).trunc() as i64
}

/// `random_masking(x, mask_ratio)` with the noise given: x [N, 1 + L, D] (class token first,
/// no position embedding yet), pos [1 + L, D], noise [N, L] uniform in [0, 1).
pub fn random_masking(x: &Tensor, pos: &Tensor, mask_ratio: f64, noise: &Tensor) -> MaskedTokens {
    let (n, l1, d) = x.size3().expect("random_masking: x must be [N, 1 + L, D]");
    let l = l1 - 1;
    assert_eq!(noise.size(), [n, l], "random_masking: noise must be [N, L] = [{n}, {l}]");
    assert_eq!(pos.size(), [l1, d], "random_masking: positional embedding must be [1 + L, D]");
    let keep = len_keep(l, mask_ratio);
    let pos = pos.to_kind(x.kind());
    // ids_shuffle = argsort(noise); ids_restore = argsort(ids_shuffle)
    let ids_shuffle = noise.argsort(1, false);
    let ids_restore = ids_shuffle.argsort(1, false);
    let ids_keep = ids_shuffle.narrow(1, 0, keep);
    // x += pos_embed[:, 1:]; x_masked = gather(x, 1, ids_keep)
    let patches = x.narrow(1, 1, l) + pos.narrow(0, 1, l);
    let kept = patches.gather(1, &ids_keep.unsqueeze(-1).expand([n, keep, d], false), false);
    // mask = ones; mask[:, :len_keep] = 0; mask = gather(mask, 1, ids_restore)
    let mask = Tensor::cat(&[Tensor::zeros([n, keep], (Kind::Float, x.device())), Tensor::ones([n, l - keep], (Kind::Float, x.device()))], 1);
    let mask = mask.gather(1, &ids_restore, false);
    let cls = x.narrow(1, 0, 1) + pos.narrow(0, 0, 1);
    MaskedTokens { tokens: Tensor::cat(&[cls, kept], 1), mask, ids_restore }
}

/// `patchify`: imgs [N, 3, H, W] -> [N, h·w, p²·3], channels last ('nchpwq->nhwpqc').
pub fn patchify(imgs: &Tensor, p: i64) -> Tensor {
    let (n, c, h, w) = imgs.size4().expect("patchify: images must be [N, 3, H, W]");
    assert!(c == 3 && h == w && h % p == 0, "patchify: images [{n}, {c}, {h}, {w}] must be square, 3-channel, sides divisible by {p}");
    let g = h / p;
    imgs.reshape([n, 3, g, p, g, p]).permute([0, 2, 4, 3, 5, 1]).reshape([n, g * g, p * p * 3])
}

/// `unpatchify`: [N, h·w, p²·3] -> [N, 3, H, W].
pub fn unpatchify(x: &Tensor, p: i64) -> Tensor {
    let (n, l, _) = x.size3().expect("unpatchify: x must be [N, L, p²·3]");
    let g = (l as f64).sqrt() as i64;
    assert_eq!(g * g, l, "unpatchify: {l} patches do not form a square grid");
    x.reshape([n, g, g, p, p, 3]).permute([0, 5, 1, 3, 2, 4]).reshape([n, 3, g * p, g * p])
}

/// `get_2d_sincos_pos_embed(dim, grid, cls_token=True)`: [1 + grid², dim], row 0 zeros,
/// computed in float64 and returned as float32.
pub fn sincos_2d(dim: i64, grid: i64, device: Device) -> Tensor {
    assert!(dim % 4 == 0, "sin-cos table width {dim} must be a multiple of 4");
    let quarter = (dim / 4) as usize;
    let omega: Vec<f64> = (0..quarter).map(|i| 1.0 / 10000f64.powf(i as f64 / quarter as f64)).collect();
    let mut table = vec![0.0f64; ((grid * grid + 1) * dim) as usize];
    for m in 0..(grid * grid) as usize {
        // np.meshgrid(grid_w, grid_h): the first half encodes the column, the second the row.
        let coords = [(m % grid as usize) as f64, (m / grid as usize) as f64];
        let row = &mut table[(m + 1) * dim as usize..(m + 2) * dim as usize];
        for (half, pos) in coords.iter().enumerate() {
            for (i, w) in omega.iter().enumerate() {
                let base = half * 2 * quarter;
                row[base + i] = (pos * w).sin();
                row[base + quarter + i] = (pos * w).cos();
            }
        }
    }
    Tensor::from_slice(&table).view([grid * grid + 1, dim]).to_kind(Kind::Float).to_device(device)
}
