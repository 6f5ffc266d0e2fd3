"""dlc-pipeline's configuration: its evaluation variants, the stage configs it nests, and the checks that need
more than one group (variants, held-out counts, patch sizes) plus its memory estimate."""
from __future__ import annotations

from dataclasses import dataclass, field

from dlc.validate import ConfigError, check, choice, nonempty, within_memory

from ..stages import dit as sdit, encoder as senc, prior as sprior, representation as srep
from ..stages.data import DataConfig

# evaluation variant → (conditioning in bench.conditioning, where its conditions come from)
VARIANTS = {"dlc": ("dlc", "prior"), "unconditional": ("none", None), "dlc-recon": ("dlc", "held-out"),
            "real-train": (None, None), "rcg": ("rcg", "prior"), "rcg-recon": ("rcg", "held-out"),
            "embedding": ("embedding", "prior"), "embedding-recon": ("embedding", "held-out"),
            "label": ("label", "prior"), "label-recon": ("label", "held-out")}
DEFAULT_VARIANTS = ("dlc", "unconditional", "dlc-recon", "real-train")
# what a seed of --seeds can retrain: the SEM encoder (its codes, probes and the RCG projection), the priors
# (SEDD, RDM, the label marginal's draws), the DiTs (training and sampling noise)
VARY = ("encoder", "prior", "dit")


@dataclass(frozen=True)
class EvalConfig:
    n_samples: int = 2_000           # generated images per variant (and real train images for the floor)
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    features: str = "effnet-lite0"   # bench.features extractor
    weights: str = ""                # the extractor's weights file ('' = its default source)
    resize: str = ""                 # '' = the extractor's default (legacy-tf / clean)
    feature_batch_size: int = 100
    bootstrap: int = 0               # bootstrap resamples for the Fréchet distance CI (0: none)
    probe_factors: tuple[str, ...] = ("shape", "colour", "size", "x", "y", "background")
    probe_n: int = 3000              # train codes for the probes (test codes are the probe test set)
    n_compose: int = 8               # composition pairs in the figure
    grid: int = 64                   # images per sample grid
    save_samples: bool = True        # samples/<variant>.npz in the run directory (ADM format)

    def __post_init__(self):
        from bench.features import FEATURE_EXTRACTORS, RESIZE_MODES

        check(self, positive=("n_samples", "feature_batch_size", "grid"),
              non_negative=("bootstrap", "probe_n", "n_compose"))
        nonempty("variants", self.variants, "name at least one evaluation variant")
        choice("features", self.features, FEATURE_EXTRACTORS.names())
        if self.resize:
            choice("resize", self.resize, RESIZE_MODES)


@dataclass(frozen=True)
class DLCPipelineConfig:
    data: DataConfig = field(default_factory=DataConfig)
    encoder: senc.EncoderConfig = field(default_factory=senc.EncoderConfig)
    prior: sprior.PriorConfig = field(default_factory=sprior.PriorConfig)
    prior_sampling: sprior.PriorSamplingConfig = field(default_factory=sprior.PriorSamplingConfig)
    dit: sdit.DiTConfig = field(default_factory=sdit.DiTConfig)
    dit_sampling: sdit.DiTSamplingConfig = field(default_factory=sdit.DiTSamplingConfig)
    # the continuous baselines' stages (variants rcg, embedding and their -recon)
    representation: srep.RepresentationConfig = field(default_factory=srep.RepresentationConfig)
    rdm: srep.RDMStageConfig = field(default_factory=srep.RDMStageConfig)
    rdm_sampling: srep.RDMSamplingConfig = field(default_factory=srep.RDMSamplingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # the stage groups each seed retrains; the others are trained once, with the first seed, and shared, e.g.
    # vary: [dit] measures the DiT's training noise alone on one encoder, one set of codes and one prior
    vary: tuple[str, ...] = VARY

    def __post_init__(self):
        from ..registry import did_you_mean

        nonempty("vary", self.vary, f"name the stage groups a seed retrains, from {', '.join(VARY)}")
        for group in self.vary:
            choice("vary", group, VARY)

        bad = [v for v in self.eval.variants if v not in VARIANTS]
        if bad:
            raise ValueError(f"unknown variant(s) {bad}.{did_you_mean(bad[0], list(VARIANTS))} "
                             f"Choose from {', '.join(VARIANTS)}")
        self.dit_sampling.check(self.dit)
        self._check_patches()
        recon = [v for v in self.eval.variants if VARIANTS[v][1] == "held-out"]
        if self.eval.n_samples > self.data.n_test and recon:
            raise ValueError(f"eval.n_samples={self.eval.n_samples} exceeds data.n_test={self.data.n_test}, "
                             f"but {recon[0]} needs one held-out image per sample; lower eval.n_samples")

        if 0 < self.data.sizes()[1] < 2 * self.eval.n_compose:
            raise ConfigError("eval.n_compose", self.eval.n_compose, f"needs {2 * self.eval.n_compose} held-out "
                              f"images, more than data.n_test={self.data.n_test}", "lower eval.n_compose")

    def _check_patches(self) -> None:
        """The encoder's ViT and the DiT cut their inputs into whole patches (else they fail only when built)."""
        from dlc.encoder import VIT_PRESETS

        size, enc = self.data.image_size, self.encoder
        if enc.backbone in VIT_PRESETS and (enc.input_size or size) % VIT_PRESETS[enc.backbone][3]:
            key, patch = "encoder.input_size" if enc.input_size else "data.image_size", VIT_PRESETS[enc.backbone][3]
            raise ConfigError(key, enc.input_size or size, f"is not a multiple of {enc.backbone}'s patch size "
                              f"{patch}", f"choose a multiple of {patch}")
        down = 1 if self.dit.vae == "pixel" else 8                      # the SD-VAE's downsampling factor
        patch = int(self.dit.model.rsplit("/", 1)[1])
        if size % (down * patch):
            raise ConfigError("data.image_size", size, f"does not give {self.dit.model} (patch {patch}"
                              + (", VAE factor 8" if down > 1 else "") + ") whole patches",
                              f"choose a multiple of {down * patch}")

    def estimate(self) -> dict[str, float]:
        """Host memory (bytes) of the largest arrays a run holds, from the sizes alone: {what: bytes}."""
        from dlc.encoder import VIT_PRESETS

        n_train, n_test = self.data.sizes()
        n, side, L, V = self.eval.n_samples, self.data.image_size, self.encoder.L, self.encoder.V
        image = 3 * side * side                                         # uint8
        latent = 4 * (image if self.dit.vae == "pixel" else 4 * (side // 8) ** 2)   # float32
        dim = VIT_PRESETS[self.encoder.backbone][0] if self.encoder.backbone in VIT_PRESETS else 1024
        return {"images": (n_train + n_test) * image,
                "DLC export (soft codes and embeddings)": (n_train + n_test) * (L * V + dim) * 4,
                "DiT inputs": (n_train + min(self.dit.monitor_n, n_test)) * latent,
                "samples": n * (image + latent), "features": (n_test + n) * 2048 * 4}

    def check_resources(self, available: int | None = None) -> None:
        """Refuse a run whose `estimate()` exceeds this machine's memory (bench.config.preflight calls it)."""
        within_memory(self.estimate(), "lower data.n_train, data.n_test or eval.n_samples, or use a machine with "
                      "more memory", available)
