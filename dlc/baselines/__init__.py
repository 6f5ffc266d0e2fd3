"""Continuous-representation baselines: RCG-style (frozen random projection to 256-d, standardised per
sample) and raw DINOv2 embeddings, each with an RDM-style diffusion prior for unconditional generation."""
from .rcg import (REPRESENTATIONS, RCGProjector, RCGProjectorConfig, load_projector, raw_representation,
                  rcg_representation, save_projector, standardize_per_sample)
from .rdm import RDM_MODELS, RDMConfig, SimpleMLP, load_rdm, rdm_diffusion, sample_rdm, save_rdm, train_rdm

__all__ = [
    "RCGProjector", "RCGProjectorConfig", "standardize_per_sample", "rcg_representation", "raw_representation",
    "REPRESENTATIONS", "save_projector", "load_projector",
    "RDMConfig", "SimpleMLP", "RDM_MODELS", "rdm_diffusion", "train_rdm", "sample_rdm", "save_rdm", "load_rdm",
]
