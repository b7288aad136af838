"""MLR-SNet as the learning-rate scheduler of your own PyTorch loop (the README example).

Run it as is: ``python docs/scheduler_example.py``.  The data below are a synthetic
stand-in (labels from the signs of a few features) so the file runs anywhere; put your own
model and DataLoader in their place.  ``checkpoints="ours"`` is the small set shipped with
the package; ``"official"`` uses the authors' release (``--checkpoints``/``$MLRSNET_CHECKPOINTS``).
"""

import torch
import torch.nn.functional as F

from mlrsnet.snet.scheduler import MLRSNetScheduler

torch.manual_seed(0)
x = torch.randn(1024, 20)
y = (x[:, :5].sum(1) > 0).long() + 2 * (x[:, 5:8].sum(1) > 0).long()  # stand-in data, 4 classes

# --- the example: your model, optimizer and loader, plus the scheduler ----------------
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True)
model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
optimizer = torch.optim.SGD(model.parameters(), lr=0.0, weight_decay=5e-4)
scheduler = MLRSNetScheduler(optimizer, checkpoints="ours", num_classes=4, epochs=6, steps_per_epoch=len(loader))
for epoch in range(6):
    for xb, yb in loader:
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        scheduler.step(loss)  # after backward, before optimizer.step(): MLR-SNet reads this loss
        optimizer.step()
    # ---------------------------------------------------------------------------------------
    with torch.no_grad():
        full = F.cross_entropy(model(x), y).item()
    print(f"epoch {epoch + 1}: train loss {full:.4f}  lr {scheduler.get_last_lr()[0]:.4f}")
