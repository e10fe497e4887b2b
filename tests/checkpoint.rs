//! `cargo test --test checkpoint`: PyTorch checkpoints read without Python (the golden sets'
//! Lightning checkpoints, strided views and dtypes, CLIP TorchScript and HF RoBERTa sources),
//! converted and exported back; hostile inputs in `hostile`, the mutation loop in `fuzz`.
/// The test modules under tests/checkpoint/.
mod checkpoint {
    mod bench;
    mod fuzz;
    mod hostile;
    pub mod util;
}

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use checkpoint::util::{bit_equal, fixture, python, rel_err, root, scratch};
use m3ae::checkpoint::read_checkpoint;
use m3ae::weights::convert::{convert, ConfigOptions};
use m3ae::checkpoint::export::{export_model_dir, write_checkpoint_as, Layout};
use m3ae::checkpoint::sources::{read_clip, read_roberta};
use m3ae::weights::fresh::init_model;
use m3ae::checkpoint::{TorchFile, Value};
use m3ae::weights::load_model_source;
use m3ae::config::M3aeConfig;
use m3ae::weights::{load_state_dict, read_safetensors, LoadReport};
use m3ae::M3aeTransformerSs;
use tch::{nn, Device, IndexOp, Kind, Tensor};

/// manifest.json's `upstream_load_report` and `checkpoint_image_size` of a golden set.
fn manifest(set: &str) -> (LoadReport, i64) {
    let text = std::fs::read_to_string(root().join("parity").join(set).join("manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let list = |k: &str| -> Vec<String> {
        m["upstream_load_report"][k].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    let report = LoadReport { missing: list("missing"), unexpected: list("unexpected"), adapted: list("adapted"), regenerated: list("regenerated"), cast: vec![] };
    (report, m["checkpoint_image_size"].as_i64().unwrap())
}

/// The golden set's image size (config.json), which the checkpoint must be loaded at.
fn set_image_size(set: &str) -> i64 {
    M3aeConfig::from_json_file(&root().join("parity").join(set).join("config.json")).unwrap().image_size
}

/// `--set` overrides that state a golden set's RoBERTa config (its `config.json`'s
/// `language_encoder_config`: upstream checkpoints do not carry it), then `extra`.
fn stated(set: &str, extra: &[(&str, serde_json::Value)], image_size: Option<i64>) -> ConfigOptions {
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root().join("parity").join(set).join("config.json")).unwrap()).unwrap();
    let mut overrides = vec![("language_encoder_config".to_string(), cfg["language_encoder_config"].clone())];
    overrides.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    ConfigOptions { config_file: None, overrides, image_size }
}

/// Converts a golden set's model.ckpt and compares every tensor with state_dict.safetensors;
/// returns the largest err.
fn check_conversion(set: &str, bit_exact: bool) -> f64 {
    let dir = root().join("parity").join(set);
    let out = scratch(&format!("convert-{set}"));
    // the parity sets' config.json is the checkpoint's config at the set's size, for testing
    let opts = stated(set, &[("test_only", serde_json::json!(true))], Some(set_image_size(set)));
    let w = convert(&dir.join("model.ckpt"), &out, &opts).unwrap();
    let (upstream, _) = manifest(set);
    assert_eq!(w.report, upstream, "{set}: load report differs from upstream's");
    let on_disk: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("load_report.json")).unwrap()).unwrap();
    assert_eq!(on_disk, serde_json::to_value(&upstream).unwrap());

    let reference = read_safetensors(&dir.join("state_dict.safetensors")).unwrap();
    let written = read_safetensors(&out.join("model.safetensors")).unwrap();
    assert_eq!(written.keys().collect::<Vec<_>>(), reference.keys().collect::<Vec<_>>(), "{set}: key sets differ");
    let mut worst = 0.0f64;
    for (k, r) in &reference {
        let t = &written[k];
        if bit_exact || !w.report.adapted.contains(k) && !w.report.regenerated.contains(k) {
            assert!(bit_equal(t, r), "{set}: `{k}` is not bit-equal");
        }
        worst = worst.max(rel_err(t, r));
    }
    assert!(worst <= 1e-6, "{set}: max err {worst:e}");
    // the written config is the checkpoint's, at the set's image size
    let cfg = M3aeConfig::from_json_file(&out.join("config.json")).unwrap();
    let want = M3aeConfig::from_json_file(&dir.join("config.json")).unwrap();
    assert_eq!(M3aeConfig { vision_encoder_config: None, ..cfg }, want);
    println!("{set}: {} tensors, max err {worst:e}", reference.len());
    worst
}

#[test]
fn tiny_a_converts_bit_equal() {
    assert_eq!(check_conversion("tiny-a", true), 0.0);
}

#[test]
fn tiny_b_converts_from_48_to_64_px() {
    let (report, ckpt_size) = manifest("tiny-b");
    assert_eq!((ckpt_size, set_image_size("tiny-b")), (48, 64));
    assert_eq!(report.adapted, ["vision_encoder.visual.positional_embedding"]);
    check_conversion("tiny-b", false);
}

/// Builds the model from model.ckpt directly (as the parity suite can) and compares every
/// parameter with the set's reference weights.
fn model_from_ckpt(set: &str) {
    let dir = root().join("parity").join(set);
    let w = load_model_source(&dir.join("model.ckpt"), &stated(set, &[], Some(set_image_size(set)))).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    M3aeTransformerSs::new(&vs.root(), &w.config).unwrap();
    let report = load_state_dict(&vs, &w.state_dict, &dir.join("model.ckpt")).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    let reference = read_safetensors(&dir.join("state_dict.safetensors")).unwrap();
    let vars = vs.variables();
    assert_eq!(vars.len(), reference.len());
    for (name, var) in &vars {
        let err = rel_err(var, &reference[name]);
        assert!(err <= 1e-6, "{set}: `{name}` err {err:e}");
    }
}

#[test]
fn model_builds_from_tiny_a_ckpt() {
    model_from_ckpt("tiny-a");
}

#[test]
fn model_builds_from_tiny_b_ckpt() {
    model_from_ckpt("tiny-b");
}

#[test]
fn overrides_and_converted_folders_load_again() {
    let dir = root().join("parity/tiny-b");
    let out = scratch("overrides");
    let opts = stated("tiny-b", &[("mim_layer", serde_json::json!(0)), ("loss_names.vqa", serde_json::json!(0))], None);
    let w = convert(&dir.join("model.ckpt"), &out, &opts).unwrap();
    assert_eq!((w.config.mim_layer, w.config.loss_names.vqa, w.config.image_size), (0, 0.0, 48));
    assert!(w.report.adapted.is_empty() && w.report.regenerated.is_empty(), "48 px stays 48 px");
    assert!(w.report.unexpected.iter().any(|k| k.starts_with("vqa_head.")), "the vqa head is no longer in the model");
    // the 48 px folder loads at 64 px: adapted and regenerated as from the .ckpt
    // (the folder's config.json states the RoBERTa config convert resolved)
    let opts = ConfigOptions { overrides: vec![("loss_names.vqa".into(), serde_json::json!(1))], image_size: Some(64), ..Default::default() };
    let again = load_model_source(&out, &opts).unwrap();
    // the vqa head is back in the model but not in the folder: it starts fresh
    assert_eq!(again.report.missing, ["vqa_head.0.bias", "vqa_head.0.weight", "vqa_head.1.bias", "vqa_head.1.weight", "vqa_head.3.bias", "vqa_head.3.weight"]);
    assert_eq!(again.report.adapted, ["vision_encoder.visual.positional_embedding"]);
    assert_eq!(again.report.regenerated, ["mim_head.decoder_pos_embed"]);
    assert_eq!(again.state_dict["vision_encoder.visual.positional_embedding"].size(), [17, 64]);
}

#[test]
fn reads_strided_views_and_every_dtype() {
    let (sd, config) = read_checkpoint(&fixture("tensors.pt")).unwrap();
    assert!(config.is_none());
    let (expected, _) = read_checkpoint(&fixture("tensors_expected.pt")).unwrap();
    assert_eq!(sd.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (k, t) in &sd {
        assert!(bit_equal(t, &expected[k]), "`{k}` differs from torch's contiguous copy");
    }
    let base = &sd["f32"];
    assert!(bit_equal(&sd["f32_transposed"], &base.tr().contiguous()));
    assert!(bit_equal(&sd["f32_offset_slice"], &base.i((2..5, 3..7)).contiguous()));
    assert_eq!(Vec::<f32>::try_from(sd["f32_expanded"].flatten(0, -1)).unwrap(), [0., 0., 0., 0., 1., 1., 1., 1., 2., 2., 2., 2.]);
    assert_eq!(Vec::<u8>::try_from(&sd["u8"]).unwrap(), [250, 251, 252, 253, 254, 255]);
    assert_eq!(Vec::<i64>::try_from(&sd["i64"]).unwrap(), [-3, -2, -1, 0, 1, 2, 3]);
    assert_eq!(Vec::<i32>::try_from(sd["i32"].flatten(0, -1)).unwrap(), [1, 3, 6, 8]);
    let kinds: BTreeMap<&str, Kind> = sd.iter().map(|(k, t)| (k.as_str(), t.kind())).collect();
    assert_eq!((kinds["f16"], kinds["bf16"], kinds["f64"], kinds["bool"]), (Kind::Half, Kind::BFloat16, Kind::Double, Kind::Bool));
    assert_eq!((sd["scalar"].size(), sd["scalar"].double_value(&[])), (vec![], 3.5));
    assert_eq!(sd["empty"].size(), [0, 4]);
    // non-tensor data decodes as values
    let file = TorchFile::open(&fixture("tensors.pt")).unwrap();
    let meta = file.root.get("meta").unwrap();
    let nested = meta.get("nested").unwrap();
    assert_eq!(nested, &Value::List(vec![Value::Int(1), Value::Tuple(vec![Value::Float(2.5), Value::Str("x".into())]), Value::None]));
    assert!(matches!(meta.get("big"), Some(Value::BigInt(b)) if b.len() == 9 && b[8] == 0x40));
}

#[test]
fn clip_torchscript_maps_to_the_vision_encoder() {
    let (sd, dropped, adapted) = read_clip(&fixture("clip_tiny.pt"), 64).unwrap();
    assert!(adapted, "48 px CLIP at 64 px");
    let (expected, _) = read_checkpoint(&fixture("clip_tiny_expected.pt")).unwrap();
    // upstream builds layers - 1 blocks and no proj; the text tower stays out except its embeddings
    for k in ["visual.proj", "visual.transformer.resblocks.1.attn.in_proj_weight", "text_projection", "logit_scale", "transformer.resblocks.0.ln_1.weight"] {
        assert!(dropped.iter().any(|d| d == k), "`{k}` should be left out");
    }
    for (k, t) in &sd {
        let bare = k.strip_prefix("vision_encoder.").unwrap();
        if bare == "visual.positional_embedding" {
            assert_eq!(t.size(), [17, 64]);
            assert!(bit_equal(&t.i(0), &expected[bare].i(0)), "class row kept");
        } else {
            assert!(bit_equal(t, &expected[bare]), "`{k}` differs from the module's state_dict");
        }
    }
    assert_eq!(sd.len() + dropped.len(), expected.len());
    assert!(sd.contains_key("vision_encoder.ln_final.weight") && sd.contains_key("vision_encoder.token_embedding.weight"));
}

#[test]
fn roberta_folder_maps_to_the_language_encoder() {
    let (sd, cfg, dropped) = read_roberta(&fixture("roberta_tiny")).unwrap();
    assert_eq!((cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.vocab_size), (16, 1, 2, 30));
    assert_eq!(dropped, ["lm_head.bias", "roberta.embeddings.position_ids"]);
    assert!(sd.contains_key("language_encoder.pooler.dense.weight"));
    assert!(sd.keys().all(|k| k.starts_with("language_encoder.") && !k.contains("roberta.")));
}

#[test]
fn fresh_model_takes_its_encoders_from_clip_and_roberta() {
    let dir = root().join("parity/tiny-b");
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let base: serde_json::Value = serde_json::from_str(&text).unwrap();
    let set = [("input_image_embed_size".into(), serde_json::json!(64)), ("input_text_embed_size".into(), serde_json::json!(16))];
    let mut config = m3ae::config::keys::build_config(Some(base), "tiny-b", &set, Some(64)).unwrap();
    config.language_encoder_config = None; // --roberta states it
    let (sd, report) = init_model(&mut config, Some(&fixture("clip_tiny.pt")), Some(&fixture("roberta_tiny"))).unwrap();
    assert_eq!(config.vision_encoder_config.unwrap().layers, 2);
    assert_eq!(report.adapted, ["vision_encoder.visual.positional_embedding"]);
    assert!(report.missing.iter().all(|k| !k.starts_with("vision_encoder.") && !k.starts_with("language_encoder.")));
    assert!(report.missing.iter().any(|k| k.starts_with("multi_modal_vision_layers.")), "fusion layers start from init");
    let (clip, _) = read_checkpoint(&fixture("clip_tiny_expected.pt")).unwrap();
    assert!(bit_equal(&sd["vision_encoder.visual.conv1.weight"], &clip["visual.conv1.weight"]));
    let (roberta, _, _) = read_roberta(&fixture("roberta_tiny")).unwrap();
    let key = "language_encoder.encoder.layer.0.attention.self.query.weight";
    assert!(bit_equal(&sd[key], &roberta[key]));
    let vs = nn::VarStore::new(Device::Cpu);
    M3aeTransformerSs::new(&vs.root(), &config).unwrap();
    load_state_dict(&vs, &sd, Path::new("init")).unwrap();
}

#[test]
fn export_round_trips_through_torch_load() {
    let dir = root().join("parity/tiny-a");
    let out = scratch("export");
    convert(&dir.join("model.ckpt"), &out.join("model"), &stated("tiny-a", &[], None)).unwrap();
    let ckpt = out.join("exported.ckpt");
    assert_eq!(export_model_dir(&out.join("model"), &ckpt).unwrap(), read_safetensors(&dir.join("state_dict.safetensors")).unwrap().len());
    // our own reader first: same tensors, same config (the RoBERTa config included)
    let w = load_model_source(&ckpt, &ConfigOptions::default()).unwrap();
    let reference = read_safetensors(&dir.join("state_dict.safetensors")).unwrap();
    assert!(reference.iter().all(|(k, t)| bit_equal(&w.state_dict[k], t)));
    assert_eq!(w.config.mim_layer, 1);
    let Some(py) = python() else {
        println!("SKIPPED the torch.load half: {} is missing (run scripts/setup.sh)", root().join(".venv/bin/python").display());
        return;
    };
    let script = r#"
import sys, torch
from safetensors.torch import load_file
ck = torch.load(sys.argv[1], weights_only=True)
ref = load_file(sys.argv[2])
sd = ck["state_dict"]
assert type(sd).__name__ == "OrderedDict", type(sd)
assert list(sd) == sorted(ref), "keys differ"
for k, v in ref.items():
    assert sd[k].dtype == v.dtype and torch.equal(sd[k], v), k
m = torch.nn.Module()
for k, v in sd.items():
    m.register_buffer(k.replace(".", "_"), torch.empty_like(v))
m.load_state_dict({k.replace(".", "_"): v for k, v in sd.items()})
assert ck["hyper_parameters"]["config"]["mim_layer"] == 1
print("torch.load ok", len(sd))
"#;
    let status = Command::new(py).arg("-c").arg(script).arg(&ckpt).arg(dir.join("state_dict.safetensors")).output().unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "torch.load failed:\n{stdout}\n{}", String::from_utf8_lossy(&status.stderr));
    assert_eq!(stdout.trim(), format!("torch.load ok {}", reference.len()));
}

#[test]
fn other_models_checkpoint_names_missing_keys() {
    let dir = root().join("parity/tiny-b");
    let out = scratch("other-model");
    let mut sd = read_safetensors(&dir.join("state_dict.safetensors")).unwrap();
    sd.retain(|k, _| !k.starts_with("multi_modal_vision_layers."));
    sd.insert("encoder.weight".to_string(), Tensor::ones([2, 2], (Kind::Float, Device::Cpu)));
    let cfg = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    m3ae::checkpoint::export::write_checkpoint(&out.join("other.ckpt"), &sd, &cfg).unwrap();
    let err = load_model_source(&out.join("other.ckpt"), &stated("tiny-b", &[], None)).err().expect("another model's weights must not load").to_string();
    assert!(err.contains("other.ckpt") && err.contains("missing") && err.contains("multi_modal_vision_layers.0."), "{err}");
}

/// A golden set's config.json (which states its RoBERTa config).
fn set_config(set: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("parity").join(set).join("config.json")).unwrap()).unwrap()
}

/// A state dict saved in half precision converts into the fp32 model, as upstream's
/// `load_state_dict` copies it, and the report lists every cast tensor. Integer data where a
/// float parameter is expected is still refused, naming the key.
#[test]
fn half_precision_checkpoint_converts_and_lists_its_casts() {
    let dir = root().join("parity/tiny-a");
    let out = scratch("half");
    let reference = read_safetensors(&dir.join("state_dict.safetensors")).unwrap();
    let half: m3ae::weights::StateDict = reference.iter().map(|(k, v)| (k.clone(), v.to_kind(Kind::Half))).collect();
    write_checkpoint_as(&out.join("half.ckpt"), &half, Layout::Lightning(&set_config("tiny-a"))).unwrap();
    let w = convert(&out.join("half.ckpt"), &out.join("model"), &ConfigOptions::default()).unwrap();
    let all: Vec<&String> = reference.keys().collect();
    assert_eq!(w.report.cast.iter().collect::<Vec<_>>(), all, "every tensor was f16");
    for (k, r) in &reference {
        let t = &w.state_dict[k];
        assert_eq!(t.kind(), Kind::Float, "{k}");
        assert!(bit_equal(t, &r.to_kind(Kind::Half).to_kind(Kind::Float)), "`{k}` is not the f16 value widened");
    }
    let on_disk: LoadReport = serde_json::from_str(&std::fs::read_to_string(out.join("model/load_report.json")).unwrap()).unwrap();
    assert_eq!(on_disk.cast, w.report.cast);
    // bf16 and f64 are floats too; an integer bias is not
    let mut mixed: m3ae::weights::StateDict = half.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
    mixed.insert("itm_head.fc.weight".into(), reference["itm_head.fc.weight"].to_kind(Kind::BFloat16));
    mixed.insert("itm_head.fc.bias".into(), reference["itm_head.fc.bias"].to_kind(Kind::Double));
    write_checkpoint_as(&out.join("mixed.ckpt"), &mixed, Layout::Lightning(&set_config("tiny-a"))).unwrap();
    assert!(load_model_source(&out.join("mixed.ckpt"), &ConfigOptions::default()).is_ok());
    mixed.insert("itm_head.fc.bias".into(), Tensor::zeros([2], (Kind::Int64, Device::Cpu)));
    write_checkpoint_as(&out.join("int.ckpt"), &mixed, Layout::Lightning(&set_config("tiny-a"))).unwrap();
    let err = load_model_source(&out.join("int.ckpt"), &ConfigOptions::default()).err().expect("integer data for a float parameter").to_string();
    assert!(err.contains("itm_head.fc.bias") && err.contains("Int64"), "{err}");
}

/// `--set` and config files name only known keys; an unknown one is an error naming the
/// closest known key. Upstream keys the port does not read are accepted.
#[test]
fn config_keys_are_checked() {
    use m3ae::config::keys::{build_config, parse_override};
    for (set, suggestion) in [("mim_layr=3", "mim_layer"), ("loss_names.mlmm=0", "mlm"), ("drop_rat=0", "drop_rate")] {
        let err = parse_override(set).expect_err("unknown key").to_string();
        assert!(err.contains(&format!("did you mean `{suggestion}`")), "{set}: {err}");
    }
    for known in ["log_dir=\"x\"", "num_gpus=2", "loss_names.mim=0", "language_encoder_config.num_attention_heads=3", "melinda_label_size.mine=3"] {
        parse_override(known).unwrap_or_else(|e| panic!("{known}: {e}"));
    }
    let mut file = set_config("tiny-b");
    file["num_head"] = 3.into();
    let err = build_config(Some(file), "conf.json", &[], None).expect_err("unknown key in a file").to_string();
    assert!(err.contains("conf.json") && err.contains("`num_head`") && err.contains("`num_heads`"), "{err}");
    // convert checks --set before reading anything
    let opts = ConfigOptions { overrides: vec![("mim_layr".into(), 3.into())], ..Default::default() };
    let err = load_model_source(&root().join("parity/tiny-b/model.ckpt"), &opts).err().expect("unknown --set key").to_string();
    assert!(err.contains("mim_layer"), "{err}");
}

/// A checkpoint without a config: `--config FILE` states it; without one, the shape keys are
/// read from the weights, or the conversion stops naming the key the weights cannot give.
#[test]
fn bare_state_dicts_convert_with_a_config_file_or_from_their_shapes() {
    let dir = root().join("parity/tiny-b");
    let out = scratch("bare");
    let reference = read_safetensors(&dir.join("state_dict.safetensors")).unwrap();
    for (name, layout) in [("bare.pt", Layout::Bare), ("wrapped.ckpt", Layout::StateDictOnly)] {
        let path = out.join(name);
        write_checkpoint_as(&path, &reference, layout).unwrap();
        assert!(read_checkpoint(&path).unwrap().1.is_none(), "{name} carries no config");
        // tiny-b's 4 classes match none of upstream's MELINDA columns: the key to set is named
        let err = load_model_source(&path, &ConfigOptions::default()).err().expect("class column unknown").to_string();
        assert!(err.contains("label_column_name") && err.contains("4 classes"), "{err}");
        // --config FILE is its config
        let opts = ConfigOptions { config_file: Some(dir.join("config.json")), ..Default::default() };
        let w = convert(&path, &out.join(format!("{name}.model")), &opts).unwrap();
        assert!(w.report.missing.is_empty() && w.report.adapted.is_empty());
        assert!(reference.iter().all(|(k, t)| bit_equal(&w.state_dict[k], t)), "{name}");
        assert_eq!(M3aeConfig { vision_encoder_config: None, ..w.config }, M3aeConfig::from_json_file(&dir.join("config.json")).unwrap());
        // a shape error says which side is which, and the config key that sets it
        let opts = ConfigOptions { config_file: Some(dir.join("config.json")), overrides: vec![("vqa_label_size".into(), 9.into())], ..Default::default() };
        let err = load_model_source(&path, &opts).err().expect("vqa size differs").to_string();
        assert!(err.contains("vqa_head.3.bias") && err.contains("checkpoint holds shape [5]") && err.contains("expects [9]") && err.contains("`vqa_label_size`"), "{err}");
    }
    // without the class head, the weights say everything but the head counts
    let mut sd: m3ae::weights::StateDict = reference.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
    sd.retain(|k, _| !k.starts_with("cls_head."));
    write_checkpoint_as(&out.join("no-cls.pt"), &sd, Layout::Bare).unwrap();
    let lang = ("language_encoder_config".to_string(), set_config("tiny-b")["language_encoder_config"].clone());
    let opts = ConfigOptions { overrides: vec![lang], ..Default::default() };
    let w = load_model_source(&out.join("no-cls.pt"), &opts).unwrap();
    let c = &w.config;
    assert_eq!((c.patch_size, c.image_size, c.hidden_size, c.input_text_embed_size, c.input_image_embed_size), (16, 64, 48, 64, 64));
    assert_eq!((c.num_top_layer, c.mlp_ratio, c.vqa_label_size, c.vocab_size), (2, 4, 5, 120));
    assert_eq!((c.mim_decoder_hidden_size, c.mim_decoder_num_layers), (24, 1));
    let l = c.loss_names;
    assert_eq!([l.mlm, l.mim, l.itm, l.vqa, l.cls, l.irtr], [1.0, 1.0, 0.0, 1.0, 0.0, 1.0], "heads present; itm_head serves irtr");
    assert_eq!((c.num_heads, c.mim_decoder_num_heads), (12, 6), "upstream's defaults, which the widths admit");
    assert!(w.report.missing.is_empty() && w.report.unexpected.is_empty());
    assert!(sd.iter().all(|(k, t)| bit_equal(&w.state_dict[k], t)));
    // a default the weights contradict is an error naming the key: tiny-a's MIM decoder is 32
    // wide (6 heads do not divide it), its fusion 64 wide (nor do 12)
    let mut a = read_safetensors(&root().join("parity/tiny-a/state_dict.safetensors")).unwrap();
    a.retain(|k, _| !k.starts_with("cls_head."));
    write_checkpoint_as(&out.join("a.pt"), &a, Layout::Bare).unwrap();
    let err = load_model_source(&out.join("a.pt"), &ConfigOptions::default()).err().expect("6 heads do not divide 32").to_string();
    assert!(err.contains("32 wide") && err.contains("`mim_decoder_num_heads`"), "{err}");
    let opts = ConfigOptions { overrides: vec![("mim_decoder_num_heads".into(), 2.into())], ..Default::default() };
    let err = load_model_source(&out.join("a.pt"), &opts).err().expect("12 heads do not divide 64").to_string();
    assert!(err.contains("64 wide") && err.contains("`num_heads`"), "{err}");
}
