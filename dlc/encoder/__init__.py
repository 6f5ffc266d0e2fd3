"""The SEM encoder: backbones, the Simplicial Embedding head, DINO training and DLC export."""
from .backbones import (BACKBONES, VIT_PRESETS, DINOv2Backbone, EfficientNetBackbone, ViT, ViTConfig,
                        backbone_from_spec, build_backbone, load_dinov2, load_efficientnet_lite0)
from .dino import (SMALL_CROPS, DINOHead, DINOLoss, MultiCropConfig, cosine_schedule, koleo_loss, multi_crop,
                   random_resized_boxes, teacher_temperature)
from .export import ARTIFACT_FORMAT, DLCArtifact, export_codes
from .sem import (SEM_ENCODERS, SEMConfig, SEMEncoder, SEMHead, SEMOutput, build_sem_encoder, load_sem_encoder,
                  save_sem_encoder, sem_softmax)
from .train import PAPER_TRAIN_CONFIG, SEMTrainConfig, SEMTrainResult, SSLModel, train_sem_encoder

__all__ = [
    "BACKBONES", "VIT_PRESETS", "ViT", "ViTConfig", "DINOv2Backbone", "EfficientNetBackbone", "build_backbone",
    "backbone_from_spec", "load_dinov2", "load_efficientnet_lite0",
    "SEMConfig", "SEMHead", "SEMOutput", "SEMEncoder", "sem_softmax", "build_sem_encoder", "SEM_ENCODERS",
    "save_sem_encoder", "load_sem_encoder",
    "DINOHead", "DINOLoss", "koleo_loss", "teacher_temperature", "cosine_schedule", "MultiCropConfig", "SMALL_CROPS", "multi_crop",
    "random_resized_boxes",
    "SEMTrainConfig", "SSLModel", "SEMTrainResult", "train_sem_encoder", "PAPER_TRAIN_CONFIG",
    "DLCArtifact", "export_codes", "ARTIFACT_FORMAT",
]
