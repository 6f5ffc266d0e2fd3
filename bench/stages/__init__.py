"""Reusable stages of the DLC method, shared by every experiment through one stage cache.

Each module holds a stage's frozen config (train and sampling settings apart), its compute function,
how it is stored (safe formats only) and the modules its outputs depend on (`Stage.code`):

    data        DataConfig, load_split                     (generated / read, not stored)
    encoder     EncoderConfig, ENCODER, CODES              SEM encoder; DLC export + continuous embedding
    prior       PriorConfig, PriorSamplingConfig, SEDD, PRIOR_SAMPLES
    dit         DiTConfig, DiTSamplingConfig, LATENTS, DIT, IMAGE_SAMPLES   (ε-DDPM or flow matching; DiT keeps
                ckpt_every checkpoints and the code-swap gap)
    features    FeatureConfig, FEATURES                    features of an image set with one extractor
    representation  RepresentationConfig, RDMStageConfig, RDMSamplingConfig, REPRESENTATION, RDM, RDM_SAMPLES
                                                           RCG / embedding vectors and their RDM prior
    tokens      TokenizerConfig, TokenNetConfig, TokenSamplingConfig, TOKENIZER, TOKEN_GRIDS, TOKEN_MODEL,
                TOKEN_SAMPLES                              token diffusion (seed 004): VQ tokenizer, class-conditional
                                                           SEDD / MaskGIT over its tokens, decoded samples
    toy         ToyTrainConfig, ToyEvalConfig, ToySampleConfig, TOY_*   the Gaussian-mixture study (numerics in toy/)

An experiment calls `key = ctx.key(STAGE, config, upstream=(...), seed=seed)` and
`value = ctx.stage(STAGE, key, compute)`; the key covers every config field, the upstream keys and
the source of the stage's own modules, so a second experiment declaring the same stages reuses them.
"""
