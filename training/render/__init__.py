"""Synthetic image generation: pyrender (headless EGL) renders, backgrounds, interference, jobs."""
