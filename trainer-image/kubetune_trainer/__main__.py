"""Entrypoint: `python -m kubetune_trainer --config trainer.json [--preflight]`.

Exit codes are the contract with the operator: 0 success, with the result in the termination log; 78
(`CONFIG_ERROR_EXIT_CODE`, EX_CONFIG) when the spec or its data is wrong, which the Job's pod failure policy
never retries, with one line `kubetune-trainer: config error: <message>` on stderr and in the termination
log (what the operator copies into status); 143 (`TERMINATED_EXIT_CODE`) after SIGTERM (see
`termination`), which the policy ignores; 1 for anything else (OOM, network), which is retried.

`--preflight` (the operator's CPU pod before the GPU Job) runs only the checks that need no weights
and, on success, writes the `PreflightReport` as JSON to the termination log for the operator to read.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from kubetune.api.v1alpha1.pod_contract import PREFLIGHT_FLAG
from kubetune.api.v1alpha1.trainer_config import CONFIG_ERROR_EXIT_CODE, TERMINATED_EXIT_CODE, TrainerConfig
from kubetune_trainer.context import Hooks
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.termination import (
    CONFIG_ERROR_PREFIX,
    Terminated,
    TerminationRequest,
    write_termination_message,
)
from kubetune_trainer.torch_extensions import writable_extensions_dir

log = logging.getLogger("kubetune_trainer")

RETRYABLE_EXIT_CODE = 1
"""Merge mode lives in its own package, which exposes `run(config: TrainerConfig) -> object`."""


def load_config(path: Path) -> TrainerConfig:
    """Read and validate the whole TrainerConfig; any problem is a config error with one line."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"trainer config {path} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"trainer config {path} is not JSON: {exc}") from exc
    try:
        return TrainerConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise ConfigError(f"invalid trainer config: {problems}") from exc


def default_hooks() -> Hooks:
    """The production wiring: status/metrics reporting, evaluation suites and the gate."""
    from kubetune_trainer import measure, report
    from kubetune_trainer.evaluate import evaluate_suites, gate_hook, prepare_suites

    return Hooks(
        preflight=[prepare_suites],
        before_train=[report.attach_reporter, measure.attach],
        evaluate=evaluate_suites,
        gate=gate_hook,
        after_result=[report.publish_result],
    )


def _run_merge(config: TrainerConfig) -> None:
    from kubetune_trainer import merge

    merge.run(config)


def _report_config_error(message: str) -> None:
    line = f"{CONFIG_ERROR_PREFIX}{message}"
    print(line, file=sys.stderr, flush=True)
    write_termination_message(line + "\n")


def _run_preflight(config: TrainerConfig) -> None:
    from kubetune_trainer.pipeline import check

    report = json.dumps(check(config).to_wire(), separators=(",", ":"))
    log.info("preflight passed: %s", report)
    write_termination_message(report + "\n")


def _configure_logging() -> None:
    """Log lines go to stdout so stderr carries only the one-line config error the operator reads.

    `basicConfig` is a no-op when the root logger already has handlers (an embedding host, pytest).
    Ranks other than 0 log warnings only, so a multi-process job reads like a single process.
    """
    level = logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING
    logging.basicConfig(stream=sys.stdout, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "filelock", "fsspec", "botocore", "s3fs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubetune_trainer", description="Run one kubetune training job.")
    parser.add_argument(
        "--config", required=True, type=Path, help="TrainerConfig JSON (mounted from the pod's annotation)"
    )
    parser.add_argument(
        PREFLIGHT_FLAG, action="store_true", help="only the checks that need no weights; report to the termination log"
    )
    # the deepspeed launcher appends --local_rank=N; the rank also arrives as LOCAL_RANK
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _configure_logging()
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        config = load_config(args.config)
        writable_extensions_dir(Path(config.runtime.work_dir), os.environ)  # before anything loads DeepSpeed ops
        if args.preflight:
            _run_preflight(config)
            return 0
        if config.mode == "merge":
            _run_merge(config)
            return 0
        termination = TerminationRequest(config.runtime.termination_grace_seconds)
        termination.install()
        from kubetune_trainer.pipeline import run

        result = run(config, hooks=default_hooks(), termination=termination)
    except ConfigError as exc:
        _report_config_error(exc.message)
        return CONFIG_ERROR_EXIT_CODE
    except Terminated:
        log.warning("stopped by SIGTERM; a replacement pod resumes from the newest durable checkpoint")
        return TERMINATED_EXIT_CODE
    except Exception:
        log.exception("training failed (retryable)")
        return RETRYABLE_EXIT_CODE
    log.info("artifact %s sha256 %s (%d bytes)", result.artifact_uri, result.sha256, result.size_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
