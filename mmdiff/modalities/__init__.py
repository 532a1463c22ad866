"""Modality adapters: one sub-package per modality (see :mod:`mmdiff.modality`)."""
