"""Train a spiking MLP on the event digits with the Python API only (what `spike train` does, by hand).

    python examples/digits_api.py
"""

import torch

from spike.core.config import DataConfig
from spike.data.builders import build_data, make_loaders
from spike.neurons import LI, LIF
from spike.synapses import Flatten, Linear, SharedDropout, Sequential
from spike.train import Trainer, get_loss, seed_everything


def main() -> None:
    seed_everything(0)
    data_cfg = DataConfig(name="digits", n_time_bins=20, batch_size=32)
    data = build_data(data_cfg)                          # events -> [N, T, 2, 34, 34] count frames
    train, test = make_loaders(data, data_cfg)           # batches are time-first [T, B, 2, 34, 34]
    dt = data.dt_us / 1000.0                             # ms per bin
    net = Sequential(
        Flatten(),                                       # [T, B, 2*34*34]
        Linear(2 * 34 * 34, 256),
        LIF(tau=20.0, dt=dt),                            # surrogate ATan, subtract reset
        SharedDropout(0.2),                              # one mask for all time steps
        Linear(256, 10),
        LI(tau=60.0, dt=dt),                             # non-spiking readout membrane
    )
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    trainer = Trainer(net, opt, get_loss("mean_membrane"), out_dir="runs/digits_api", epochs=5,
                      scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5))
    metrics = trainer.fit(train, test)
    print(f"test accuracy {metrics['test_accuracy']:.3f}")


if __name__ == "__main__":
    main()
