"""SEDD discrete-diffusion prior over DLC tokens: graphs (absorbing, uniform), noise schedules, the DDiT
score network, training with the score-entropy loss, and samplers (Euler, analytic, DLC remasking
corrector, MaskGIT baseline). See `model.py` for the architecture and `graph.py` for the formulas."""
from .graph import GRAPHS, Absorbing, Uniform, get_graph, sample_categorical
from .model import SEDD, SEDD_MODELS, SEDDConfig, build_sedd, load_sedd, save_sedd
from .noise import GeometricNoise, LogLinearNoise, get_noise
from .sampling import (SAMPLERS, analytic_probs, apply_remask, denoise_probs, euler_probs, remask_noise,
                       sample_sedd)
from .train import SEDDTrainConfig, check_tokens, score_entropy_loss, train_sedd

__all__ = [
    "SEDD", "SEDDConfig", "SEDD_MODELS", "build_sedd", "save_sedd", "load_sedd",
    "Absorbing", "Uniform", "get_graph", "GRAPHS", "sample_categorical",
    "LogLinearNoise", "GeometricNoise", "get_noise",
    "sample_sedd", "SAMPLERS", "analytic_probs", "euler_probs", "remask_noise", "apply_remask", "denoise_probs",
    "SEDDTrainConfig", "train_sedd", "score_entropy_loss", "check_tokens",
]
