"""Segmentation architectures (one file per family), backbones, the registry and model bundles."""

from .registry import create_model, list_models, model_entry, register_model

__all__ = ["create_model", "list_models", "model_entry", "register_model"]
