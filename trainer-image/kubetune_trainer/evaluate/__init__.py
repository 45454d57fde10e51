"""Post-training evaluation (`spec.evaluation.suites`) and the gate that decides `gatePassed`.

Pipeline wiring: `Hooks(preflight=[prepare_suites], evaluate=evaluate_suites, gate=gate_hook)`.
"""

from kubetune_trainer.evaluate.gate import decide, gate_hook
from kubetune_trainer.evaluate.suites import evaluate_suites, prepare_suites

__all__ = ["decide", "evaluate_suites", "gate_hook", "prepare_suites"]
