"""The rules that decide when a run stops early and which epoch's weights it keeps, and how a run explains them.

The rules, and the measurements behind them, are in docs/early-stopping.md. ``fitting.train``
installs the two callbacks here and calls ``explain`` when ``fit`` returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras

from ..intervals import accuracy_interval, with_interval
from ..model.architecture import TrainingSettings
from .progress import ALL_EPOCHS, TrainResult


#: why a run ended (``TrainResult.stop_reason``)
EARLY_STOPPING, CANCELLED = "early_stopping", "cancelled"


class BestWeights(keras.callbacks.Callback):
    """Keep in memory the weights of the epoch with the best validation accuracy.

    Ties go to the epoch with the lower validation loss, and an epoch that got
    at most one validation image fewer right than the best counts as a tie: on
    a few dozen validation images one image is noise, and picking by it kept
    worse epochs in the measurements (docs/early-stopping.md). Without
    validation images nothing is kept and the model ends with the last epoch's
    weights.

    Why not ``keras.callbacks.EarlyStopping(restore_best_weights=True)``: it
    ranks epochs by one monitored figure, and its ``min_delta`` only decides
    whether a new epoch beats the best so far. The rule here needs two
    figures, and an epoch may win with a *lower* accuracy than the best (one
    image fewer right, lower loss), which no ``monitor``/``mode``/``min_delta``
    can express. The set of epochs within one image of the best also changes
    when a later epoch raises the best, dropping earlier candidates, so each
    accuracy's lowest-loss weights are kept until they fall out of reach.
    EarlyStopping also ties keeping to stopping (one patience for both), while
    here the best epoch is kept whether or not early stopping is on.

    Args:
        n_val: the number of validation images (one image's share of accuracy is 1/n_val).
    """

    def __init__(self, n_val: int):
        super().__init__()
        self.n_val = n_val
        self.tolerance = 1.0 / max(n_val, 1) + 1e-6
        self.top = -math.inf
        # the lowest-loss epoch of each accuracy within one image of the top: (loss, 0-based epoch, weights)
        self.candidates: dict[float, tuple[float, int, list]] = {}
        self.best_epoch: int | None = None  # 0-based within this run
        self.best_weights = None
        self.best_accuracy = self.best_loss = math.nan

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        acc, loss = logs.get("val_accuracy"), logs.get("val_loss")
        if acc is None or loss is None or not (math.isfinite(float(acc)) and math.isfinite(float(loss))):
            return
        acc, loss = float(acc), float(loss)
        self.top = max(self.top, acc)
        if acc >= self.top - self.tolerance and (acc not in self.candidates or loss < self.candidates[acc][0]):
            self.candidates[acc] = (loss, epoch, self.model.get_weights())
        self.candidates = {a: c for a, c in self.candidates.items() if a >= self.top - self.tolerance}
        acc_kept, (self.best_loss, self.best_epoch, self.best_weights) = min(
            self.candidates.items(), key=lambda item: (item[1][0], -item[0]))
        self.best_accuracy = acc_kept


class EarlyStop(keras.callbacks.Callback):
    """Stop when neither validation accuracy nor validation loss improved for ``patience`` epochs.

    It never stops before ``min_epochs`` epochs of this run: on a small set the
    first epochs' validation figures are noise (docs/early-stopping.md).
    ``keras.callbacks.EarlyStopping`` watches one figure, not "either of two",
    and its ``start_from_epoch`` ignores the first epochs' figures instead of
    counting them and only holding the stop back.
    """

    def __init__(self, patience: int, min_epochs: int):
        super().__init__()
        self.patience, self.min_epochs = patience, min_epochs

    def on_train_begin(self, logs=None):
        self.best_acc, self.best_loss, self.wait = -math.inf, math.inf, 0
        self.stopped_after: int | None = None  # epochs of this run trained when it stopped

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        acc, loss = float(logs.get("val_accuracy", math.nan)), float(logs.get("val_loss", math.nan))
        improved = acc > self.best_acc or loss < self.best_loss
        self.best_acc, self.best_loss = max(self.best_acc, acc), min(self.best_loss, loss)
        self.wait = 0 if improved else self.wait + 1
        if self.wait >= self.patience and epoch + 1 >= self.min_epochs:
            self.stopped_after = epoch + 1
            self.model.stop_training = True


@dataclass(frozen=True)
class StoppingPlan:
    """The early-stopping rule ``train`` applies to one run.

    Args:
        enabled: whether early stopping may end the run.
        patience: epochs without improvement of validation accuracy or loss before it stops.
        min_epochs: epochs of this run before it may stop.
        note: one sentence for the log saying what applies, or why it is off.
    """

    enabled: bool
    patience: int
    min_epochs: int
    note: str


def stopping_plan(settings: TrainingSettings, n_val: int) -> StoppingPlan:
    """The early-stopping rule for a run of ``settings.epochs`` epochs with ``n_val`` validation images.

    Early stopping is off when the patience is 0, when there are no
    validation images, and when there are fewer than ``settings.min_val_images``
    (too few to tell an improvement from noise). Otherwise it may stop after
    ``settings.min_epochs`` epochs (by default half the run, rounded up) when
    neither validation accuracy nor validation loss improved for
    ``max(settings.patience, epochs // 4)`` epochs.
    """
    epochs = settings.epochs
    if settings.patience <= 0:
        return StoppingPlan(False, 0, epochs, "Early stopping is off (patience 0): all epochs will run.")
    if n_val == 0:
        return StoppingPlan(False, 0, epochs, "No validation images: early stopping is off and all epochs will run.")
    if n_val < settings.min_val_images:
        return StoppingPlan(False, 0, epochs,
                            f"Validation set of {n_val} images: early stopping is off (it needs at least "
                            f"{settings.min_val_images} to tell an improvement from noise); all epochs will run.")
    minimum = settings.min_epochs if settings.min_epochs is not None else math.ceil(epochs / 2)
    patience = max(settings.patience, epochs // 4)
    return StoppingPlan(True, patience, minimum,
                        f"Early stopping: from epoch {minimum} of this run on, training stops when neither "
                        f"validation accuracy nor validation loss improved for {patience} epochs.")


#: an accuracy at most this far above chance is "near chance" however many images measured it
CHANCE_MARGIN = 0.05


def near_chance(accuracy: float | None, num_classes: int, n_images: int) -> bool:
    """Whether ``accuracy`` on ``n_images`` is no clear sign of learning with ``num_classes`` classes.

    Chance is 1/classes; "near" is when the accuracy's 95 % interval (``core.intervals``) reaches down to chance,
    so that a guesser could well have scored it on that many images, or when it is less than
    ``CHANCE_MARGIN`` above chance (too little to be worth a model however sure it is).
    """
    if accuracy is None or num_classes < 2 or n_images < 1 or not math.isfinite(accuracy):
        return False
    chance = 1.0 / num_classes
    return accuracy_interval(accuracy, n_images)[0] <= chance or accuracy <= chance + CHANCE_MARGIN


ADVICE = ("What usually helps: more epochs, augmentation (flip, rotate, zoom), a smaller image size, "
          "and more images per class.")

#: a training loss this many times a guesser's (ln of the number of classes) means the run diverged
DIVERGED_FACTOR = 10


def diverged_epoch(history, num_classes: int) -> dict | None:
    """The first epoch whose training loss is not a number or far above a guesser's, or None.

    A guesser's loss is ln(classes) (0.69 with 2 classes); a loss ten times that (and at least 10) is no
    slow start but weights thrown off by too large steps: more epochs do not help, a lower learning
    rate does.
    """
    limit = DIVERGED_FACTOR * max(1.0, math.log(max(num_classes, 2)))
    for row in history:
        loss = row.get("loss")
        if isinstance(loss, (int, float)) and (not math.isfinite(loss) or loss > limit):
            return row
    return None


def _divergence_advice(row: dict, settings: TrainingSettings) -> str:
    loss = row["loss"]
    shown = f"{loss:,.0f}" if math.isfinite(loss) else "not a number"
    rate = settings.learning_rate
    return (f"The training loss diverged ({shown} in epoch {row['epoch']} at learning rate {rate:g}): lower the "
            f"learning rate, for example to {rate / 10:g}, and train again.")


def explain(result: "TrainResult", settings: TrainingSettings, plan: StoppingPlan, stopper: "EarlyStop | None",
            best: BestWeights, initial_epoch: int, num_classes: int, n_judged: int) -> None:
    """Fill in why the run stopped, which weights the model holds, and whether it is near chance."""
    done = len(result.history)
    last = initial_epoch + done
    if result.cancelled:
        result.stop_reason = CANCELLED
        result.stop_message = f"Stopped by you after {done} complete epoch(s) of {settings.epochs}."
        result.kept_message = "The model keeps the weights trained so far."
    elif stopper is not None and stopper.stopped_after is not None and done < settings.epochs:
        result.stop_reason, result.stopped_early = EARLY_STOPPING, True
        result.stop_message = (f"Early stopping at epoch {last} of {initial_epoch + settings.epochs}: neither "
                               f"validation accuracy nor validation loss improved in the last {plan.patience} "
                               "epochs.")
    else:
        result.stop_reason = ALL_EPOCHS
        result.stop_message = f"Trained all {settings.epochs} epochs."
    if not result.cancelled:
        if result.best_epoch is not None:
            row = result.history[result.best_epoch - initial_epoch - 1]
            if row["val_accuracy"] < best.top:
                why = (f"validation accuracy {with_interval(row['val_accuracy'], best.n_val)}, one validation "
                       f"image short of the best ({best.top:.3f}), with a lower validation loss "
                       f"({row['val_loss']:.4f})")
            else:
                tie = (" and the lowest validation loss of the epochs within one image of it"
                       if any(r["val_accuracy"] >= best.top - best.tolerance and r is not row
                              for r in result.history) else "")
                why = (f"best validation accuracy {with_interval(row['val_accuracy'], best.n_val)}{tie} "
                       f"(validation loss {row['val_loss']:.4f})")
            result.kept_message = f"Kept epoch {result.best_epoch}'s weights: {why}."
        elif not settings.restore_best:
            result.kept_message = f"Kept the last epoch's weights (epoch {last}): keeping the best epoch is off."
        elif result.history and result.history[-1].get("val_loss") is not None:
            result.kept_message = (f"Kept the last epoch's weights (epoch {last}): no epoch had a finite validation "
                                   "loss and accuracy to pick a best one by.")
        else:
            result.kept_message = (f"Kept the last epoch's weights (epoch {last}): without validation images "
                                   "there is no best epoch to pick.")
    if not result.history:
        return
    row = next((r for r in result.history if r["epoch"] == result.best_epoch), result.history[-1])
    acc = row.get("val_accuracy")
    which = "Validation"
    if acc is None:
        acc, which = row.get("accuracy"), "Training"
    if near_chance(acc, num_classes, n_judged):
        blown = diverged_epoch(result.history, num_classes)
        advice = _divergence_advice(blown, settings) if blown is not None else ADVICE
        chance = 1 / num_classes
        how = ("its interval reaches down to chance" if accuracy_interval(acc, n_judged)[0] <= chance
               else f"less than {CHANCE_MARGIN:g} above it")
        result.chance_message = (f"{which} accuracy {with_interval(acc, n_judged)} is at or near chance "
                                 f"({chance:.3f} with {num_classes} classes; {how}): the model has not clearly "
                                 f"learned to tell the classes apart. {advice}")
