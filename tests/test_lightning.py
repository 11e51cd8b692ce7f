"""lrkit inside a real Lightning Trainer: lrkit's ReduceLROnPlateau driven through ``monitor``,
ScheduledLR stepped per update with its plateau fed by `ReportMetric` (and resumed from a checkpoint),
and the `LRFinder` callback."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lrkit.schedules as S
from lrkit.torch import PlateauFactor, ReduceLROnPlateau, ScheduledLR

pl = pytest.importorskip("lightning.pytorch")
lrkit_lightning = pytest.importorskip("lrkit.lightning")
LRFinder, ReportMetric = lrkit_lightning.LRFinder, lrkit_lightning.ReportMetric



BATCHES = 4  # training batches per epoch


def _data(seed: int = 0, n: int = 16 * BATCHES) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, (x[:, :3].sum(1) > 0).long())


def _loader(shuffle: bool = True) -> DataLoader:
    return DataLoader(_data(), batch_size=16, shuffle=shuffle)


class Net(pl.LightningModule):
    """A small classifier; `schedulers(optimizer)` makes the lr_scheduler entry of configure_optimizers,
    `metrics[epoch]` is the ``val_loss`` logged at the end of that epoch's validation."""

    def __init__(self, schedulers=None, metrics=None, groups=(0.05,), dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(16, 2)
        self.schedulers, self.metrics, self.groups = schedulers, metrics, groups

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.head(self.body(x)), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_ce", nn.functional.cross_entropy(self.head(self.body(x)), y))

    def on_validation_epoch_end(self):
        if self.metrics is not None:
            self.log("val_loss", self.metrics[min(self.current_epoch, len(self.metrics) - 1)])

    def configure_optimizers(self):
        if len(self.groups) == 1:
            params = [{"params": self.parameters(), "lr": self.groups[0]}]
        else:
            params = [{"params": self.body.parameters(), "lr": self.groups[0]},
                      {"params": self.head.parameters(), "lr": self.groups[1]}]
        optimizer = torch.optim.SGD(params, lr=self.groups[0], momentum=0.9)
        if self.schedulers is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.schedulers(optimizer)}


class RecordLRs(pl.Callback):
    """Every group's LR at the start of each training batch (the LRs of that update)."""

    def __init__(self):
        self.lrs: list[list[float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append([float(group["lr"]) for group in trainer.optimizers[0].param_groups])


def _trainer(tmp_path, epochs: int, callbacks=(), **kwargs) -> pl.Trainer:
    settings = dict(default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False, logger=False,
                    enable_checkpointing=False, accelerator="cpu", devices=1, limit_val_batches=1, log_every_n_steps=1,
                    num_sanity_val_steps=0)
    settings.update(kwargs)
    return pl.Trainer(max_epochs=epochs, callbacks=list(callbacks), **settings)


def _fit(tmp_path, model: Net, epochs: int, callbacks=(), ckpt_path=None, **kwargs) -> pl.Trainer:
    trainer = _trainer(tmp_path, epochs, callbacks, **kwargs)
    trainer.fit(model, _loader(), DataLoader(_data(1), batch_size=32), ckpt_path=ckpt_path)
    return trainer


# -- lrkit's ReduceLROnPlateau through Lightning's monitor ------------------------------------------
METRICS = [1.0, 0.9, 0.95, 0.95, 0.95, 0.7, 0.75, 0.8, 0.8, 0.8]


def test_lrkit_plateau_is_driven_by_monitor_and_cuts_as_torch_does(tmp_path):
    per_epoch = {}
    for kind in (ReduceLROnPlateau, torch.optim.lr_scheduler.ReduceLROnPlateau):
        def schedulers(optimizer, kind=kind):
            return {"scheduler": kind(optimizer, factor=0.5, patience=1, cooldown=1), "monitor": "val_loss"}

        record = RecordLRs()
        pl.seed_everything(0)
        _fit(tmp_path, Net(schedulers, METRICS), len(METRICS), [record])
        per_epoch[kind] = [lrs[0] for lrs in record.lrs[::BATCHES]]
    # torch's class replayed by hand on the same (float32, as logged) metrics
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.05)
    replay = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=1, cooldown=1)
    expected = []
    for value in METRICS:
        expected.append(optimizer.param_groups[0]["lr"])
        replay.step(float(torch.tensor(value)))
    assert per_epoch[ReduceLROnPlateau] == per_epoch[torch.optim.lr_scheduler.ReduceLROnPlateau] == expected
    assert len(set(expected)) == 3  # two cuts happened


# -- ScheduledLR per update, its plateau fed by ReportMetric, resumed from a checkpoint -----------
PLATEAU_METRICS = [1.0, 1.0, 1.0, 0.5, 0.6, 0.6, 0.6]  # patience 1: cuts after epochs 2 and 5
SCHEDULE = S.cosine(0.1, BATCHES * len(PLATEAU_METRICS), alpha=0.1)


def _scheduled(optimizer):
    return {"scheduler": ScheduledLR(optimizer, SCHEDULE, plateau=PlateauFactor(factor=0.5, patience=1)),
            "interval": "step"}


def test_report_metric_cuts_a_scheduled_lr_and_resumes_it_exactly(tmp_path):
    epochs, stop = len(PLATEAU_METRICS), 5
    whole = RecordLRs()
    pl.seed_everything(0)
    _fit(tmp_path / "whole", Net(_scheduled, PLATEAU_METRICS), epochs, [whole, ReportMetric("val_loss")])
    steps = np.arange(BATCHES * epochs)
    multiplier = np.repeat([1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25], BATCHES)  # a cut acts from the next epoch on
    np.testing.assert_allclose([lrs[0] for lrs in whole.lrs], SCHEDULE(steps) * multiplier, rtol=1e-12)

    first, checkpoint = RecordLRs(), pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    pl.seed_everything(0)
    _fit(tmp_path / "first", Net(_scheduled, PLATEAU_METRICS), stop, [first, ReportMetric("val_loss"), checkpoint],
         enable_checkpointing=True)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["lr_schedulers"][0]
    assert saved["step"] == BATCHES * stop
    assert saved["plateau"]["multipliers"] == [0.5] and saved["plateau"]["num_bad_epochs"] == 1
    rest = RecordLRs()
    _fit(tmp_path / "rest", Net(_scheduled, PLATEAU_METRICS), epochs, [rest, ReportMetric("val_loss")],
         ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert first.lrs + rest.lrs == whole.lrs  # the cut after epoch 5 needs the saved counter


def test_without_report_metric_lightning_never_feeds_a_scheduled_lr_plateau(tmp_path):
    """Why ReportMetric exists: Lightning passes a "monitor" metric only to torch's ReduceLROnPlateau."""
    record = RecordLRs()
    _fit(tmp_path, Net(lambda opt: {**_scheduled(opt), "monitor": "val_loss"}, PLATEAU_METRICS), 4, [record])
    np.testing.assert_allclose([lrs[0] for lrs in record.lrs], SCHEDULE(np.arange(4 * BATCHES)), rtol=1e-12)


def test_report_metric_refuses_a_configuration_it_cannot_feed(tmp_path):
    with pytest.raises(ValueError, match="ReportMetric: the lr_scheduler of configure_optimizers must be a Sched"):
        _fit(tmp_path, Net(lambda opt: torch.optim.lr_scheduler.StepLR(opt, 2), PLATEAU_METRICS), 1,
             [ReportMetric("val_loss")])

    def reduce_on_plateau(optimizer):
        return {**_scheduled(optimizer), "monitor": "val_loss", "reduce_on_plateau": True}

    with pytest.raises(ValueError, match="reduce_on_plateau"):
        _fit(tmp_path, Net(reduce_on_plateau, PLATEAU_METRICS), 1, [ReportMetric("val_loss")])
    with pytest.raises(ValueError, match=r"monitor must be a metric logged by validation \(logged: .*val_ce"):
        _fit(tmp_path, Net(_scheduled, PLATEAU_METRICS), 1, [ReportMetric("val_acc")])
    with pytest.raises(ValueError, match="ReportMetric: monitor must be"):
        ReportMetric("")


def test_report_metric_skips_a_missing_metric_when_not_strict(tmp_path, caplog):
    record = RecordLRs()
    _fit(tmp_path, Net(_scheduled, PLATEAU_METRICS), 2, [record, ReportMetric("val_acc", strict=False)])
    assert "no metric 'val_acc' was logged" in caplog.text
    np.testing.assert_allclose([lrs[0] for lrs in record.lrs], SCHEDULE(np.arange(2 * BATCHES)), rtol=1e-12)


# -- LRFinder ----------------------------------------------------------------------------------
class Snapshot(pl.Callback):
    """The module's weights and the torch RNG state at on_train_start (where it sits in the
    callback list says before or after LRFinder), and the weights at the first training batch."""

    def __init__(self):
        self.weights, self.rng, self.first_batch = None, None, None

    @staticmethod
    def _weights(module):
        return {k: v.detach().clone() for k, v in module.state_dict().items()}

    def on_train_start(self, trainer, pl_module):
        self.weights, self.rng = self._weights(pl_module), torch.get_rng_state()
        self.optimizer_state = trainer.optimizers[0].state_dict()["state"]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_batch is None:
            self.first_batch = self._weights(pl_module)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_finder_leaves_the_model_as_it_was_and_training_starts_from_it(tmp_path):
    before, after, finder = Snapshot(), Snapshot(), LRFinder(num_iter=30, check="none", progress=False)
    pl.seed_everything(0)
    model = Net(dropout=0.2)
    _fit(tmp_path, model, 2, [before, finder, after])
    assert finder.result is not None and finder.result.stop_reason in ("completed", "diverged")
    assert _same(before.weights, after.weights) and _same(before.weights, after.first_batch)
    assert torch.equal(before.rng, after.rng) and after.optimizer_state == {}
    # the same run without the finder, at the suggested LR: identical weights (data order, dropout)
    pl.seed_everything(0)
    plain = Net(dropout=0.2, groups=(finder.result.suggestion,))
    _fit(tmp_path, plain, 2)
    assert _same(Snapshot._weights(model), Snapshot._weights(plain))


def test_finder_sets_every_group_keeping_ratios_and_logs(tmp_path):
    finder = LRFinder(num_iter=30, hold_steps=5, progress=False)
    model = Net(lambda opt: {"scheduler": ReduceLROnPlateau(opt), "monitor": "val_ce"}, groups=(0.01, 0.001))
    trainer = _fit(tmp_path, model, 1, [finder], logger=pl.loggers.CSVLogger(tmp_path))
    result = finder.result
    lrs = [group["lr"] for group in trainer.optimizers[0].param_groups]
    assert lrs == list(result.group_lrs) and lrs[0] == result.suggestion
    assert lrs[1] == pytest.approx(lrs[0] / 10, rel=1e-12)
    assert finder.plot_path is not None and finder.plot_path.startswith(str(trainer.log_dir))
    with open(f"{trainer.log_dir}/metrics.csv") as f:
        logged = [row["lr_finder/suggestion"] for row in csv.DictReader(f) if row.get("lr_finder/suggestion")]
    assert [float(v) for v in logged] == [pytest.approx(result.suggestion)]


def test_finder_makes_its_suggestion_a_scheduled_lr_peak_and_keeps_it_on_resume(tmp_path):
    epochs, schedule = 3, S.warmup(S.cosine(1.0, 3 * BATCHES), 4)  # schedule(0) == 0: LR 0 at the start

    def scheduled(optimizer):
        return {"scheduler": ScheduledLR(optimizer, schedule), "interval": "step"}

    finder, record = LRFinder(num_iter=30, hold_steps=5, progress=False), RecordLRs()
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _fit(tmp_path, Net(scheduled, groups=(0.01, 0.001)), 2, [finder, record, checkpoint], enable_checkpointing=True)
    result = finder.result
    assert "decaying" in result.reason  # the rule for the schedule's shape over the run
    peaks = np.array(result.group_lrs) / float(np.max(schedule(np.arange(epochs * BATCHES))))
    lrs = np.array(record.lrs)
    np.testing.assert_allclose(lrs, np.outer(schedule(np.arange(2 * BATCHES)), peaks), rtol=1e-12)
    resumed, rest = LRFinder(num_iter=30, progress=False), RecordLRs()
    _fit(tmp_path, Net(scheduled, groups=(0.01, 0.001)), epochs, [resumed, rest],
         ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert resumed.result is not None and resumed.result.suggestion == result.suggestion  # from the checkpoint
    np.testing.assert_allclose(np.array(rest.lrs), np.outer(schedule(np.arange(2 * BATCHES, 3 * BATCHES)), peaks),
                               rtol=1e-12)


class Manual(Net):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        loss = super().training_step(batch, batch_idx)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()


def test_finder_refuses_what_it_cannot_run_on(tmp_path):
    finder = LRFinder(num_iter=10, progress=False)
    with pytest.raises(ValueError, match="LRFinder: the lr_scheduler must be an lrkit.torch.ScheduledLR"):
        _fit(tmp_path, Net(lambda opt: torch.optim.lr_scheduler.StepLR(opt, 2)), 1, [finder])
    with pytest.raises(ValueError, match="LRFinder: automatic_optimization must be True"):
        _fit(tmp_path, Manual(), 1, [finder])
    with pytest.raises(ValueError, match="LRFinder: the number of train dataloaders must be 1, got 2"):
        _trainer(tmp_path, 1, [finder]).fit(Net(), [_loader(), _loader()])
    two = SimpleNamespace(optimizers=[object(), object()])
    with pytest.raises(ValueError, match=r"LRFinder: the number of optimizers must be 1 \(with several, .*got 2"):
        lrkit_lightning._single_optimizer(two, Net())
    with pytest.raises(ValueError, match="LRFinder: the train dataloader must be given to trainer.fit"):
        lrkit_lightning._train_loader(SimpleNamespace(train_dataloader=None))
    with pytest.raises(ValueError, match="LRFinder: unknown arguments \\['lr'\\]"):
        LRFinder(lr=0.1)
    with pytest.raises(ValueError, match="num_iter must be an integer >= 2"):
        LRFinder(num_iter=1)


class Digits(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_acc", (self.net(batch[0]).argmax(1) == batch[1]).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-6)  # the finder replaces it


def test_finder_suggestion_trains_digits_well(tmp_path):
    from lrkit.tasks.digits import load_digits_data

    data = load_digits_data(0)
    pl.seed_everything(0)
    finder = LRFinder(progress=False)
    trainer = _trainer(tmp_path, 3, [finder], limit_val_batches=None)
    trainer.fit(Digits(), DataLoader(data.train, batch_size=64, shuffle=True), DataLoader(data.val, batch_size=360))
    assert 1e-3 < finder.result.suggestion < 1.0
    assert float(trainer.callback_metrics["val_acc"]) > 0.9


class DumpResult(pl.Callback):
    """Writes each rank's LRFinder result and LRs (after LRFinder's on_train_start) to `directory`."""

    def __init__(self, finder: LRFinder, directory: str):
        self.finder, self.directory = finder, directory

    def on_train_start(self, trainer, pl_module):
        lrs = [group["lr"] for group in trainer.optimizers[0].param_groups]
        ddp = isinstance(trainer.strategy.model, torch.nn.parallel.DistributedDataParallel)
        with open(f"{self.directory}/rank{trainer.global_rank}.json", "w") as f:
            json.dump({"result": self.finder.result.to_dict(), "lrs": lrs, "ddp": ddp, "world": trainer.world_size}, f)


def test_finder_under_ddp_gives_every_rank_the_same_curve_and_lr(tmp_path):
    """Two gloo ranks on the CPU (forked: "ddp_spawn" works the same but re-imports Lightning, ~15 s)."""
    finder = LRFinder(num_iter=20, hold_steps=5, progress=False)
    trainer = _trainer(tmp_path, 1, [finder, DumpResult(finder, str(tmp_path))], strategy="ddp_fork", devices=2,
                       limit_train_batches=2)
    trainer.fit(Net(), _loader(), DataLoader(_data(1), batch_size=32))
    a, b = (json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2))
    assert a["ddp"] and a["world"] == 2
    assert a == b and a["lrs"] == [a["result"]["suggestion"]]


def test_import_lrkit_does_not_import_lightning():
    code = "import sys, lrkit, lrkit.torch; assert 'lightning' not in sys.modules, 'lightning imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
