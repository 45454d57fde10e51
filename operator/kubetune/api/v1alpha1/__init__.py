"""kubetune.io/v1alpha1: FineTuneJob, Adapter and the TrainerConfig handed to the trainer."""

from kubetune.api.v1alpha1.adapter import Adapter, AdapterSpec, AdapterStatus
from kubetune.api.v1alpha1.finetunejob import FineTuneJob, FineTuneJobSpec, FineTuneJobStatus
from kubetune.api.v1alpha1.trainer_config import TrainerConfig

__all__ = [
    "Adapter",
    "AdapterSpec",
    "AdapterStatus",
    "FineTuneJob",
    "FineTuneJobSpec",
    "FineTuneJobStatus",
    "TrainerConfig",
]
