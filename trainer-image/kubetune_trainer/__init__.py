"""kubetune_trainer: the trainer image entrypoint (reads TrainerConfig, trains, reports)."""
