"""Feature extractors (registered by name), their preprocessing, and the content-addressed feature cache.

    from bench.features import build_extractor, extract_features
    ext = build_extractor("inception-v3-compat", weights="weights-inception-2015-12-05-6726825d.pth")
    feats = extract_features("samples.npz", ext, layers=["pool3", "spatial"])   # {layer: (N, d) float32}

Every number computed from features should carry `ext.describe()` (extractor, layers, preprocessing, weights sha256).
"""
from .base import (FEATURE_EXTRACTORS, FEATURES_VERSION, FeatureExtractor, MissingWeightsError, Preprocessing,
                   build_extractor, file_sha256, register_extractor)
from .cache import FeatureCache, default_cache_dir, extract_features, feature_statistics_cached
from .dinov2 import DINOv2
from .effnet import EffNetLite0
from .inception import InceptionV3Compat
from .pixels import Pixels
from .resize import RESIZE_MODES, describe_resize, resize_images

__all__ = [
    "FEATURE_EXTRACTORS", "FEATURES_VERSION", "FeatureExtractor", "MissingWeightsError", "Preprocessing",
    "build_extractor", "register_extractor", "file_sha256", "FeatureCache", "default_cache_dir", "extract_features",
    "feature_statistics_cached", "DINOv2", "EffNetLite0", "InceptionV3Compat", "Pixels", "RESIZE_MODES",
    "describe_resize", "resize_images",
]
