"""A tiny training loop, recorded by reprokit: `python train.py` records one run per call."""

import random

import reprokit


@reprokit.track
def train(lr: float = 0.05, epochs: int = 20, seed: int = 0) -> dict:
    # Fit y = 3x + 1 with SGD on noisy data drawn from the run's seeded RNG.
    data = [
        (x, 3 * x + 1 + random.gauss(0, 0.1)) for x in (random.uniform(-1, 1) for _ in range(64))
    ]
    w, b = 0.0, 0.0
    for epoch in range(epochs):
        random.shuffle(data)
        loss = 0.0
        for x, y in data:
            err = w * x + b - y
            w -= lr * err * x
            b -= lr * err
            loss += err * err
        reprokit.log_metric("loss", loss / len(data), step=epoch)
        reprokit.checkpoint("weights", [w, b])
    return {"w": round(w, 6), "b": round(b, 6), "loss": loss / len(data)}


if __name__ == "__main__":
    print(train())
