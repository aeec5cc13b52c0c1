"""Small strategies to copy: each meets the plug-in protocol of ``strategies/base.py``."""
