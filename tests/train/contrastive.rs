//! Stage 0 (`m3ae pretrain-encoders`): the contrastive loss against values worked out by hand,
//! and the saved encoders read back through `vit` and `tokenizer` (the path of a fresh run)
//! computing exactly what the trained towers compute.
use std::path::Path;

use m3ae::checkpoint::torch_file::read_checkpoint;
use m3ae::config::VisionEncoderConfig;
use m3ae::model::bert::extended_attention_mask;
use m3ae::model::vision::Clip;
use m3ae::train::contrastive::{clip_loss, train, ContrastiveOptions, Pairs, Towers};
use m3ae::train::setup::{build_model, resolve, Pipeline};
use m3ae::train::task::Task;
use m3ae::weights::encoders;
use serde_json::{json, Value};
use tch::{nn, Device, Kind, Tensor};

use super::common::{pretrain_data, scratch, set, sets};

#[test]
fn contrastive_loss_matches_values_worked_out_by_hand() {
    // unit vectors: image 0 = (1, 0), image 1 = (0, 1); text 0 = (1, 0), text 1 = (0.6, 0.8);
    // temperature 1/10: logits = 10 · [[1, 0.6], [0, 0.8]] = [[10, 6], [0, 8]]
    let image = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([2, 2]);
    let text = Tensor::from_slice(&[1.0f32, 0.0, 0.6, 0.8]).view([2, 2]);
    let ce = |own: f64, other: f64| (1.0 + (other - own).exp()).ln(); // -log softmax of the own pair
    // image → text (rows): (10 vs 6), (8 vs 0); text → image (columns): (10 vs 0), (8 vs 6)
    let want = ((ce(10.0, 6.0) + ce(8.0, 0.0)) / 2.0 + (ce(10.0, 0.0) + ce(8.0, 6.0)) / 2.0) / 2.0;
    let (loss, acc) = clip_loss(&image, &text, &Tensor::from(10f32.ln()));
    let got = loss.double_value(&[]);
    assert!((got - want).abs() < 1e-6, "loss {got}, by hand {want} (0.036364…)");
    assert_eq!(acc, 1.0, "every pair ranks its own first, both ways");
    // exp(logit_scale) is capped at 100: logit_scale ln 1000 gives the loss of scale 100;
    // swapping the texts puts each pair second both ways: logits 100 · [[0.6, 1], [0.8, 0]]
    let swapped = Tensor::from_slice(&[0.6f32, 0.8, 1.0, 0.0]).view([2, 2]);
    let (loss, acc) = clip_loss(&image, &swapped, &Tensor::from(1000f32.ln()));
    // rows: (60 vs 100), (0 vs 80); columns: (60 vs 80), (0 vs 100): (40 + 80 + 20 + 100) / 4
    let want = ((ce(60.0, 100.0) + ce(0.0, 80.0)) / 2.0 + (ce(60.0, 80.0) + ce(0.0, 100.0)) / 2.0) / 2.0;
    let got = loss.double_value(&[]);
    assert!((got - want).abs() < 1e-3 * want, "capped loss {got}, by hand {want}");
    assert!((want - 60.0).abs() < 1e-6 && acc == 0.0, "no pair ranks its own first");
}

fn overrides(data: &Path, extra: Value) -> Vec<(String, Value)> {
    let s = set("train-irtr");
    let mut o = sets(json!({
        "data_root": data, "tokenizer": s.join("tokenizer"), "datasets": ["roco"], "draw_false_image": 1,
        "per_gpu_batchsize": 4, "num_workers": 1, "seed": 3, "loss_names": {"mlm": 1, "mim": 1, "itm": 1},
        "mim_decoder_hidden_size": 32, "mim_decoder_num_layers": 1, "mim_decoder_num_heads": 2, "mim_layer": -1,
    }));
    o.extend(sets(extra));
    o
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn saved_encoders_load_through_vit_and_tokenizer_and_compute_the_same() {
    let (data, out) = (pretrain_data("stage0"), scratch("stage0"));
    let config_file = set("train-irtr").join("config.json");
    let resolved = resolve(&Task::pretrain(), Some(&config_file), &overrides(&data, json!({}))).unwrap();
    assert!(resolved.encoders.is_none(), "`vit` ViT-B/16 is no file and the tokenizer folder holds no weights");
    let config = resolved.config;
    let opts = ContrastiveOptions { epochs: 1, batch: 4, ..Default::default() };
    let towers = Towers::new(&config, &opts).unwrap();
    let pipe = Pipeline::new(&config).unwrap();
    let (tr, val) = (Pairs::load(&pipe, "train").unwrap(), Pairs::load(&pipe, "val").unwrap());
    let before = towers.state_dict("language_encoder.").values().next().unwrap().copy();
    let logs = train(&towers, &tr, &val, &opts, |_| {}).unwrap();
    assert_eq!(logs.len(), 1);
    assert!(max_diff(&before, towers.state_dict("language_encoder.").values().next().unwrap()) > 0.0, "training moved the text tower");
    let saved = towers.save(&out, Path::new(&config.tokenizer)).unwrap();

    // a fresh run (load_path empty) naming them as `vit` and `tokenizer`
    let extra = json!({"vit": saved.clip, "tokenizer": saved.roberta});
    let resolved = resolve(&Task::pretrain(), Some(&config_file), &overrides(&data, extra)).unwrap();
    let enc = resolved.encoders.as_ref().expect("the CLIP file and the RoBERTa folder are read");
    assert_eq!(enc.sources, vec![saved.roberta.clone(), saved.clip.clone()]);
    let built = build_model(&resolved.config, None, false, Device::Cpu).unwrap();
    let image = val.image.narrow(0, 0, 2);
    let (ids, mask) = (val.ids.narrow(0, 0, 2), val.mask.narrow(0, 0, 2));
    let ext = extended_attention_mask(&mask, Kind::Float);
    let fresh_v = built.model.vision_encoder.visual.forward(&image, None);
    let n = encoders::load(&built.vs, enc).unwrap();
    assert_eq!(n, towers.state_dict("vision_encoder.").len() + towers.state_dict("language_encoder.").len(), "every tower tensor, nothing else");
    let (m, t) = (&built.model, &towers);
    let (v_model, v_towers) = (m.vision_encoder.visual.forward(&image, None), t.vision.visual.forward(&image, None));
    assert!(max_diff(&fresh_v, &v_towers) > 1e-3, "the check below is not vacuous: a fresh tower differs");
    assert_eq!(max_diff(&v_model, &v_towers), 0.0, "vision tower through `vit`");
    let (t_model, t_towers) = (m.language_encoder.forward_t(&ids, &ext, false), t.text.forward_t(&ids, &ext, false));
    assert_eq!(max_diff(&t_model, &t_towers), 0.0, "text tower through `tokenizer`");

    // clip.pt is a whole OpenAI CLIP visual tower: run every block it holds (the last one, which
    // M3AE drops, is the identity) and the output is the tower's
    let (sd, _) = read_checkpoint(&saved.clip).unwrap();
    let vcfg = resolved.config.vision_encoder_config.unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let whole = Clip::new(vs.root(), &VisionEncoderConfig { layers: vcfg.layers + 1, ..vcfg }, resolved.config.image_size);
    assert_eq!(whole.visual.transformer.resblocks.len(), vcfg.layers, "one block more than M3AE's");
    let loaded = m3ae::weights::load_state_dict(&vs, &sd, &saved.clip).unwrap();
    assert!(loaded.unexpected.iter().all(|k| ["visual.proj", "text_projection", "logit_scale"].contains(&k.as_str())), "{:?}", loaded.unexpected);
    assert_eq!(max_diff(&whole.visual.forward(&image, None), &v_towers), 0.0, "CLIP run whole");
    for k in ["visual.proj", "text_projection", "logit_scale"] {
        assert!(sd.contains_key(k), "clip.pt holds `{k}`");
    }
}
