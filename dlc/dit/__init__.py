"""DiT with pluggable conditioning (DLC / vector / class / none), its Gaussian diffusion or flow matching, VAE
loading, training and sampling. See `models.py` for the architecture, `diffusion.py` and `flow.py` for the formulas."""
from .diffusion import GaussianDiffusion, create_diffusion, get_betas, space_timesteps
from .flow import FLOW_SAMPLERS, FlowMatching, create_flow
from .models import CONDITIONERS, DIT_MODELS, DiT, DiTConfig, build_dit, load_dit, save_dit
from .sample import decode_latents, sample_dit
from .train import TrainResult, train_diffusion, train_dit
from .vae import DEFAULT_VAE, SD_VAE_SCALE, PixelVAE, SDVAE, load_vae, to_uint8

__all__ = [
    "DiT", "DiTConfig", "DIT_MODELS", "CONDITIONERS", "build_dit", "save_dit", "load_dit",
    "GaussianDiffusion", "create_diffusion", "get_betas", "space_timesteps",
    "FlowMatching", "create_flow", "FLOW_SAMPLERS",
    "SDVAE", "PixelVAE", "load_vae", "to_uint8", "SD_VAE_SCALE", "DEFAULT_VAE",
    "train_dit", "train_diffusion", "TrainResult", "sample_dit", "decode_latents",
]
