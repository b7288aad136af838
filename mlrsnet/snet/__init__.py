"""The method: MLR-SNet itself (network, gamma, the drop-in scheduler, checkpoint sets).

This layer needs torch and numpy only and imports nothing of the harness or of the paper's
apparatus, so ``from mlrsnet.snet import MLRSNetScheduler`` works in any training loop.
"""
