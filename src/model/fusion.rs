//! The co-attention fusion layers (upstream `language_encoders/bert_model.py`), keys
//! `multi_modal_{language,vision}_layers.{i}.`.
use tch::nn;
use tch::Tensor;

use super::bert::{BertAttention, BertIntermediate, BertLayerConfig, BertOutput};
use super::infer::count_fusion_layers;

/// Which stream a fusion layer carries (for [`super::infer::fusion_layers_run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `multi_modal_language_layers`
    Language,
    /// `multi_modal_vision_layers`
    Vision,
}

/// One fusion layer's outputs: the stream, and the attention probabilities when asked.
#[derive(Debug)]
pub struct CrossLayerOutput {
    /// [B, Lq, D]
    pub hidden: Tensor,
    /// [B, H, Lq, Lq]
    pub self_attn: Option<Tensor>,
    /// [B, H, Lq, Lk]
    pub cross_attn: Option<Tensor>,
}

/// `BertCrossLayer`: self-attention on the own stream, cross-attention (queries from the
/// self-attention output; keys and values from the other stream), then the FFN.
#[derive(Debug)]
pub struct BertCrossLayer {
    attention: BertAttention,
    crossattention: BertAttention,
    intermediate: BertIntermediate,
    output: BertOutput,
    stream: Stream,
}

impl BertCrossLayer {
    pub fn new(p: nn::Path, c: &BertLayerConfig, stream: Stream) -> Self {
        BertCrossLayer {
            stream,
            attention: BertAttention::new(&p / "attention", c),
            crossattention: BertAttention::new(&p / "crossattention", c),
            intermediate: BertIntermediate::new(&p / "intermediate", c),
            output: BertOutput::new(&p / "output", c, c.intermediate_size),
        }
    }

    /// x [B, Lx, D] under `x_mask`, attending to y [B, Ly, D] under `y_mask` (both additive,
    /// [B, 1, 1, L]; None for a stream whose tokens are all visible, as images are).
    pub fn forward_t(&self, x: &Tensor, y: &Tensor, x_mask: Option<&Tensor>, y_mask: Option<&Tensor>, output_attentions: bool, train: bool) -> CrossLayerOutput {
        self.forward_rows(x, x, y, x_mask, y_mask, output_attentions, train)
    }

    /// [`Self::forward_t`]'s row 0 (the [CLS] position) alone, [B, 1, D]: the queries, the
    /// residuals and the FFN at that position; keys and values from every token of x and y.
    pub fn forward_cls_t(&self, x: &Tensor, y: &Tensor, x_mask: Option<&Tensor>, y_mask: Option<&Tensor>, train: bool) -> Tensor {
        self.forward_rows(&x.narrow(1, 0, 1), x, y, x_mask, y_mask, false, train).hidden
    }

    /// The layer at the rows `queries` [B, Lq, D] of x: self-attention keys and values from
    /// all of x, cross-attention ones from y, residuals and FFN at the query rows.
    #[allow(clippy::too_many_arguments)]
    fn forward_rows(&self, queries: &Tensor, x: &Tensor, y: &Tensor, x_mask: Option<&Tensor>, y_mask: Option<&Tensor>, output_attentions: bool, train: bool) -> CrossLayerOutput {
        assert_eq!(x.size()[2], y.size()[2], "BertCrossLayer: streams have different widths");
        let language = self.stream == Stream::Language;
        count_fusion_layers(u64::from(language), u64::from(!language));
        let (a, self_attn) = self.attention.forward(queries, Some(x), x_mask, output_attentions, train);
        let (c, cross_attn) = self.crossattention.forward(&a, Some(y), y_mask, output_attentions, train);
        let hidden = self.output.forward(&c.apply(&self.intermediate), &c, train);
        CrossLayerOutput { hidden, self_attn, cross_attn }
    }
}
