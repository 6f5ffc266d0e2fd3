"""Token diffusion over VQ image tokens ("tokenize and diffuse", seed 004): a VQ tokenizer through diffusers'
VQModel (`vq.py`), a class-conditional SEDD score network with optional 2-D RoPE (`model.py`), training with SEDD's
score entropy or MaskGIT's masked cross-entropy (`train.py`) and class-conditional sampling with classifier-free
guidance on the discrete scores (`sample.py`)."""
from .model import ROPES, TokenModelConfig, TokenSEDD, load_token_model, rotary_cos_sin_2d, save_token_model, token_config
from .sample import Guided, sample_tokens
from .train import OBJECTIVES, TokenTrainConfig, conditional_loss, mask_ratio, masked_ce_loss, train_token_model

__all__ = ["TokenModelConfig", "TokenSEDD", "token_config", "rotary_cos_sin_2d", "save_token_model",
           "load_token_model", "ROPES", "Guided", "sample_tokens", "TokenTrainConfig", "OBJECTIVES",
           "train_token_model", "conditional_loss", "masked_ce_loss", "mask_ratio"]
