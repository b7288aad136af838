"""Competing LR methods: every module here that defines a ``Method`` subclass is registered.

Drop a new module into this folder and it appears in ``mlrsnet-bench list methods``.
"""
