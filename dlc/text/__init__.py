"""Text → DLC (DLC paper, Sec. 6): captions, tokenizers, and a masked discrete-diffusion transformer that generates
a DLC from a prompt (`TextDLCModel`, laptop scale) or a pretrained masked-diffusion LM fine-tuned on
[caption | <|start_sem|> | DLC] sequences (`dlc.text.hf`, the paper's LLaDA-8B path)."""
from .captions import SHAPES_TEMPLATES, captions_for_files, load_captions_jsonl, shapes_captions, shapes_prompt
from .diffusion import masked_diffusion_loss, reveal_counts, sample_slots
from .model import TEXT_DLC_MODELS, JointVocab, TextDLCConfig, TextDLCModel
from .tokenizer import HFTokenizer, WordTokenizer, encode_batch, minilm_path
from .train import TextDLCTrainConfig, sample_codes, train_text_dlc

__all__ = ["SHAPES_TEMPLATES", "captions_for_files", "load_captions_jsonl", "shapes_captions", "shapes_prompt",
           "masked_diffusion_loss", "reveal_counts", "sample_slots", "TEXT_DLC_MODELS", "JointVocab",
           "TextDLCConfig", "TextDLCModel", "HFTokenizer", "WordTokenizer", "encode_batch", "minilm_path",
           "TextDLCTrainConfig", "sample_codes", "train_text_dlc"]
