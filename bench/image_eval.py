"""An experiment's evaluation of its image sets against the held-out real images, one call per set.

    evaluate = ImageEvaluation(ctx, data_cfg, eval_cfg, extractor, train, test, k_data)
    evaluate(variant, images, k_images, seed, reconstruction=..., conditioned=...)

adds, for one generated (or real) image set: the conditioning-fidelity rows (`bench.fidelity`: factor agreement
with the source image for reconstructions, with the training factors for real images; objects drawn; MSEs), the
Fréchet distance / precision / recall / density / coverage / Vendi rows through `bench.evaluate.evaluate` on the
features stage (keyed by the image set's stage key, so features are computed once per image set), and the ADM
sample file `samples/<variant>.npz` for the first seed's generated sets. The real test features are computed once.
`eval_cfg` is an experiment's evaluation config with n_samples, features, feature_batch_size, bootstrap and
save_samples.
"""
from __future__ import annotations

from typing import Any

import torch

from .fidelity import fidelity_rows
from .stages import features as sfeat

IMAGE_METRICS = ["fd", "precision", "recall", "density", "coverage", "vendi"]

__all__ = ["IMAGE_METRICS", "ImageEvaluation"]


class ImageEvaluation:
    def __init__(self, ctx: Any, data_cfg: Any, eval_cfg: Any, extractor: Any, train: Any, test: Any, k_data: Any):
        self.ctx, self.data_cfg, self.cfg, self.extractor = ctx, data_cfg, eval_cfg, extractor
        self.train, self.test = train, test
        self.fcfg = sfeat.feature_config(extractor, eval_cfg.feature_batch_size)
        self.real = self.features(test.images, k_data, "real test")

    def features(self, images: torch.Tensor, upstream: Any, what: str):
        """The features stage of one image set (the extractor's default layer), keyed by the set's stage key."""
        key = self.ctx.key(sfeat.FEATURES, self.fcfg, upstream=[upstream])
        return self.ctx.stage(sfeat.FEATURES, key, lambda: sfeat.extract(self.ctx, self.extractor, images,
                                                                          self.cfg.feature_batch_size,
                                                                          f"{self.cfg.features} features: {what}"),
                              desc=f"{self.cfg.features} features: {what}")

    def __call__(self, variant: str, images: torch.Tensor, k_images: Any, seed: int, *, reconstruction: bool,
                 conditioned: bool) -> Any:
        """Adds the set's rows; returns its features (the extractor's default layer), e.g. for paired
        comparisons between sets."""
        from .evaluate import evaluate

        ctx, n = self.ctx, self.cfg.n_samples
        source = self.test.images[:n] if reconstruction else None
        target = ({f: v[:n] for f, v in self.test.factors.items()} if reconstruction else
                  {f: v[:n] for f, v in self.train.factors.items()} if not conditioned else None)
        ctx.add_rows(fidelity_rows(images, dataset=self.data_cfg.dataset, train_images=self.train.images,
                                   target=target, source=source, variant=variant, seed=seed))
        if self.cfg.save_samples and seed == ctx.seeds[0] and conditioned:
            ctx.add_samples(variant, images, f"{variant} samples (ADM npz: arr_0 N×H×W×3 uint8"
                            + ("; source: the held-out images whose representations conditioned them)" if reconstruction
                               else ")"), **({"source": source} if reconstruction else {}))
        fake = self.features(images, k_images, f"{variant} seed={seed}")
        layer = self.extractor.default_layer
        ctx.add_rows(evaluate(real={layer: self.real}, fake={layer: fake}, extractor=self.extractor,
                              metrics=IMAGE_METRICS, bootstrap=self.cfg.bootstrap, seed=seed,
                              labels={"variant": variant, "seed": seed, "features": self.cfg.features}))
        return fake
