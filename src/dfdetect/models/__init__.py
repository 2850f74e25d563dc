"""dfdetect.models: model families (``visual``, ``audio_only``, ``audio_visual``, ``aasist``,
``whisper_speech``, ``probe``) composed from parts (timm backbones, temporal transformer, frequency and
audio branches, fusion, heads).

Use :func:`dfdetect.models.factory.create_model` to build a registered model.
"""
