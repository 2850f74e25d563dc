"""dfdetect.models: timm backbones, temporal transformer, frequency and audio branches, fusion, heads.

Use :func:`dfdetect.models.factory.create_model` to build a registered model.
"""
