"""How training runs: hyperparameters, distribution, resources, checkpoints, evaluation, output."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from kubetune.api.base import CelRule, KubeModel
from kubetune.api.v1alpha1.common import DataSource, OutputUri, Quantity, ResourceName, SecretKeyRef, StorageUri
from kubetune.api.v1alpha1.constraints import TERM_PAIR_RULES, RefusalJudge, TermPairs

SuiteName = Annotated[str, StringConstraints(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")]
LabelKey = Annotated[str, StringConstraints(max_length=317)]
LabelValue = Annotated[str, StringConstraints(max_length=63)]


Precision = Literal["bf16", "fp16", "fp32"]


class TrainingSpec(KubeModel):
    """Optimization hyperparameters (per-device batch size; effective = batch x accumulation x devices)."""

    epochs: float = Field(default=1, gt=0, le=1000, description="Passes over the data; maxSteps wins when set.")
    max_steps: int | None = Field(default=None, ge=1, le=10_000_000, description="Stop after this many steps.")
    learning_rate: float = Field(default=2e-4, gt=0, le=1, description="Peak learning rate (> 0).")
    batch_size: int = Field(default=8, ge=1, le=4096, description="Per-device micro batch size.")
    gradient_accumulation: int = Field(default=1, ge=1, le=1024, description="Micro batches per optimizer step.")
    precision: Precision = Field(default="bf16", description="bf16, fp16 or fp32 training.")
    gradient_checkpointing: bool = Field(default=False, description="Trade compute for activation memory.")
    optimizer: Literal["adamw", "paged_adamw_8bit", "paged_adamw_32bit", "adafactor"] = Field(
        default="adamw", description="adamw, paged_adamw_8bit, paged_adamw_32bit (bitsandbytes) or adafactor."
    )
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        default="cosine", description="Learning-rate schedule."
    )
    warmup_ratio: float = Field(default=0.03, ge=0, le=1, description="Fraction of steps spent warming up.")
    weight_decay: float = Field(default=0.0, ge=0, le=1, description="Decoupled weight decay.")
    seed: int = Field(
        default=42,
        ge=0,
        le=2**31 - 1,
        description="Random seed, set before the model loads: covers adapter initialisation, new token rows "
        "and data order, and is recorded in the artifact manifest.",
    )
    neftune_noise_alpha: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="NEFTune: uniform noise of scale alpha / sqrt(tokens x hidden) added to the input embeddings "
        "while training (the paper used 5 for instruction tuning); not with objective rlhf, whose sampled "
        "completions it would perturb.",
    )
    torch_compile: bool = Field(
        default=False,
        description="Compile the model with torch.compile (inductor): faster steps after a compile of the first "
        "ones (minutes on a large model).",
    )
    liger_kernel: bool = Field(
        default=False,
        description="Liger's Triton kernels (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy) on the "
        "architectures Liger supports (Llama, Mistral, Qwen, Gemma, Phi...): less activation memory and faster "
        "steps; needs resources.gpus >= 1.",
    )
    deterministic: bool = Field(
        default=False,
        description="Also use deterministic kernels (torch.use_deterministic_algorithms; slower on GPU), so two "
        "runs of the same spec on the same hardware give identical weights.",
    )


class DistributedSpec(KubeModel):
    """Data parallelism and sharding across GPUs and nodes."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "self.offload == 'none' || self.strategy == 'deepspeed'",
            "distributed.offload requires distributed.strategy deepspeed: set strategy: deepspeed or offload: none",
        ),
    )

    strategy: Literal["auto", "ddp", "deepspeed", "fsdp"] = Field(
        default="auto",
        description="auto picks ddp for adapters and deepspeed for full fine-tuning on many GPUs.",
    )
    zero_stage: int = Field(default=2, ge=0, le=3, description="DeepSpeed ZeRO stage 0..3.")
    offload: Literal["none", "cpu", "nvme"] = Field(
        default="none", description="DeepSpeed optimizer/parameter offload (deepspeed only)."
    )


class Toleration(KubeModel):
    """Pod toleration (core/v1 shape)."""

    key: Annotated[str, StringConstraints(max_length=317)] | None = Field(default=None, description="Taint key.")
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: LabelValue | None = Field(default=None, description="Taint value for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(default=None, description="Effect.")
    toleration_seconds: int | None = Field(default=None, ge=0, description="For NoExecute: how long to stay.")


class ResourcesSpec(KubeModel):
    """What each trainer pod gets, and where it may run."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "self.nodes == 1 || self.gpus >= 1",
            "resources.nodes > 1 requires resources.gpus >= 1: multi-node training runs one process per GPU",
        ),
        CelRule(
            "!has(self.workloadPriorityClassName) || has(self.queueName)",
            "resources.workloadPriorityClassName requires resources.queueName: only Kueue reads it, "
            "and Kueue only manages Jobs submitted to a LocalQueue",
        ),
    )

    gpus: int = Field(default=1, ge=0, le=64, description="nvidia.com/gpu per node (0 runs on CPU).")
    nodes: int = Field(default=1, ge=1, le=512, description="Nodes; > 1 makes an Indexed Job with a headless Service.")
    gpu_product: Annotated[str, StringConstraints(max_length=63)] | None = Field(
        default=None, description="Becomes the nodeSelector nvidia.com/gpu.product."
    )
    cpu: Quantity | None = Field(default=None, description="CPU request and limit per pod.")
    memory: Quantity | None = Field(default=None, description="Memory request and limit per pod.")
    shared_memory: Quantity = Field(default="8Gi", description="Size of the memory-backed /dev/shm.")
    node_selector: Annotated[dict[LabelKey, LabelValue], Field(max_length=32)] = Field(
        default_factory=dict, description="Extra node labels the pods require."
    )
    tolerations: Annotated[list[Toleration], Field(max_length=32)] = Field(
        default_factory=list, description="Tolerations for tainted GPU nodes."
    )
    priority_class_name: ResourceName | None = Field(default=None, description="PriorityClass of the pods.")
    queue_name: ResourceName | None = Field(
        default=None, description="Kueue LocalQueue; the Job is created suspended and admitted by Kueue."
    )
    workload_priority_class_name: ResourceName | None = Field(
        default=None,
        description="Kueue WorkloadPriorityClass (the kueue.x-k8s.io/priority-class label of the Job): orders "
        "the queue, and a higher one preempts lower ones where the ClusterQueue allows it; needs queueName.",
    )

    @property
    def processes_per_node(self) -> int:
        """One training process per GPU; a CPU-only pod runs one."""
        return max(self.gpus, 1)

    @property
    def world_size(self) -> int:
        return self.processes_per_node * self.nodes


TaskName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][\w.\-]*$")]
MetricName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][\w.\-]*$")]


class LmEvalSuite(KubeModel):
    """Tasks of EleutherAI's lm-evaluation-harness, run on the trained model (and the base with compareToBase).

    Built-in tasks (arc_easy, hellaswag, mmlu, ...) download their datasets from the Hub when they run
    (into the model-cache volume, so later runs reuse them); tasks under `include` (task YAMLs with
    local data files) run offline.
    """

    tasks: Annotated[list[TaskName], Field(min_length=1, max_length=8)] = Field(
        description="Task or group names, e.g. [arc_easy, hellaswag], or tasks defined under include."
    )
    metric: MetricName = Field(
        default="acc",
        description="The harness metric every task reports (acc, acc_norm, exact_match, ...); the suite's score "
        "is its mean over the tasks, reported as NAME.METRIC and used by the gate.",
    )
    num_fewshot: int | None = Field(default=None, ge=0, le=64, description="Few-shot examples (default: the task's).")
    limit: int | None = Field(default=None, ge=1, le=1_000_000, description="Examples per task (default: all).")
    batch_size: int = Field(default=8, ge=1, le=1024, description="Requests scored per forward pass.")
    include: DataSource | None = Field(
        default=None,
        description="A directory of task YAMLs (pvc://, s3://, hf://datasets/... or file://); data files they "
        "name by relative path are read from that directory.",
    )


class EvalSuite(KubeModel):
    """One evaluation: perplexity on held-out data, accuracy on multiple choice by log-likelihood, the
    counterfactual bias gap, a safety rate (refusals on harmful prompts, over-refusals on benign ones), or
    lm-evaluation-harness tasks."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "has(self.metric) != has(self.lmEval)",
            "evaluation.suites: set exactly one of metric (perplexity, accuracy or loss on a dataset) or lmEval "
            "(lm-evaluation-harness tasks)",
        ),
        CelRule(
            "!has(self.metric) || self.metric != 'accuracy' || has(self.dataset)",
            "evaluation.suites: metric accuracy needs a dataset of multiple-choice rows (question, choices, answer)",
        ),
        CelRule(
            "!has(self.lmEval) || !has(self.dataset)",
            "evaluation.suites: lmEval tasks bring their own data; put local task files under lmEval.include, "
            "not dataset",
        ),
        CelRule(
            "(has(self.metric) && self.metric == 'bias-gap') == has(self.termPairs)",
            "evaluation.suites: metric bias-gap needs termPairs (e.g. [[he, she]]), and only bias-gap takes them",
        ),
        *TERM_PAIR_RULES,
        CelRule(
            "!has(self.metric) || !(self.metric in ['refusal-rate', 'over-refusal']) || has(self.dataset)",
            "evaluation.suites: metrics refusal-rate and over-refusal need a dataset of prompts (harmful prompts "
            "for refusal-rate, benign ones for over-refusal)",
        ),
        CelRule(
            "!has(self.refusal) || (has(self.metric) && self.metric in ['refusal-rate', 'over-refusal'])",
            "evaluation.suites: refusal only applies to metrics refusal-rate and over-refusal",
        ),
    )

    name: SuiteName = Field(description="Suite name; metrics are reported as NAME.METRIC.")
    metric: Literal["perplexity", "accuracy", "loss", "bias-gap", "refusal-rate", "over-refusal"] | None = Field(
        default=None,
        description="perplexity, accuracy, loss; bias-gap: the mean absolute log-likelihood gap (nats) between "
        "each row mentioning a term and its counterfactual with termPairs swapped (lower is fairer); "
        "refusal-rate: share of the dataset's (harmful) prompts whose generated answer refuses (higher is safer); "
        "over-refusal: the same share on benign prompts (lower is better). Or use lmEval instead.",
    )
    term_pairs: TermPairs | None = Field(
        default=None, description="bias-gap only: pairs of terms swapped both ways, e.g. [[he, she], [him, her]]."
    )
    refusal: RefusalJudge | None = Field(
        default=None,
        description="refusal-rate and over-refusal only: how answers are judged refusals (default: built-in rules).",
    )
    dataset: DataSource | None = Field(default=None, description="Data for this suite (default: the eval split).")
    lm_eval: LmEvalSuite | None = Field(default=None, description="lm-evaluation-harness tasks instead of metric.")
    compare_to_base: bool = Field(default=False, description="Also score the base model; report NAME.delta.")

    @property
    def score_metric(self) -> str:
        """The METRIC of the suite's score `NAME.METRIC`."""
        if self.lm_eval is not None:
            return self.lm_eval.metric
        assert self.metric is not None  # the CEL rule above: one of metric or lmEval
        return self.metric


class Gate(KubeModel):
    """The adapter is Validated, and Ready to merge or serve as a reward model, only when every threshold holds."""

    max_regression: float | None = Field(
        default=None, ge=0, le=1, description="Largest allowed drop versus the base on compareToBase suites."
    )
    min_scores: Annotated[dict[SuiteName, float], Field(max_length=16)] = Field(
        default_factory=dict, description="Minimum score per suite name."
    )
    publish_unvalidated: bool = Field(
        default=False,
        description="Publish the Adapter Ready even when it misses the gate (Validated stays False). By default an "
        "adapter that misses the gate is published with phase Failed and reason GateFailed: no merge and no "
        "adapterRef (reward or cost model, refusal judge, constitution writer) accepts it.",
    )


class EvaluationSpec(KubeModel):
    """Evaluation suites and the gate an adapter must pass before it is Validated."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "self.suites.all(a, self.suites.exists_one(b, b.name == a.name))",
            "evaluation.suites: suite names must be unique",
        ),
        CelRule(
            "!has(self.gate) || self.gate.minScores.all(k, self.suites.exists(s, s.name == k))",
            "evaluation.gate.minScores names a suite that does not exist: use a name from evaluation.suites",
        ),
        CelRule(
            "!has(self.gate) || !has(self.gate.maxRegression) || self.suites.exists(s, s.compareToBase)",
            "evaluation.gate.maxRegression needs a suite with compareToBase: true",
        ),
    )

    suites: Annotated[list[EvalSuite], Field(max_length=16)] = Field(
        default_factory=list, description="Evaluations run after training."
    )
    gate: Gate | None = Field(default=None, description="Thresholds for the Validated condition.")


CHECKPOINTS_UNDER_OUTPUT = ".checkpoints"
"""Default checkpoint storage: this folder under `output.uri`."""


class CheckpointStorageSpec(KubeModel):
    """Where checkpoints outlive the pod, so a replacement pod (retry, eviction, suspend, preemption) resumes."""

    uri: StorageUri | None = Field(
        default=None,
        description="s3://BUCKET/PREFIX or pvc://CLAIM/PATH (file:///PATH only for local runs); each run writes "
        f"under URI/<FineTuneJob uid>/. Default: OUTPUT_URI/{CHECKPOINTS_UNDER_OUTPUT}/ (next to output.uri, "
        "with the same credentials); required when output.uri is hf://, which holds only the finished artifact.",
    )
    delete_on_success: bool = Field(
        default=True,
        description="Remove this run's checkpoints once its artifact and result are published; false keeps "
        "them. Checkpoints of a run that failed, or was deleted unfinished, are always kept (remove "
        "URI/<uid>/ by hand).",
    )


class CheckpointingSpec(KubeModel):
    """Periodic checkpoints on durable storage so a replacement pod resumes instead of starting over."""

    every_steps: int = Field(default=200, ge=1, le=10_000_000, description="Save every N optimizer steps.")
    keep_last: int = Field(
        default=2, ge=1, le=100, description="Checkpoints kept, in the pod and on the durable storage."
    )
    resume: bool = Field(default=True, description="Resume from the newest complete checkpoint on restart.")
    storage: CheckpointStorageSpec = Field(
        default_factory=CheckpointStorageSpec, description="Durable checkpoint location and cleanup."
    )


class OutputSpec(KubeModel):
    """Where artifacts go and how the Adapter is published."""

    cel_rules: ClassVar[tuple[CelRule, ...]] = (
        CelRule(
            "!self.uri.startsWith('hf://') || has(self.credentialsSecretRef)",
            "output.uri hf://ORG/NAME pushes to the Hub: set output.credentialsSecretRef to a Secret holding a "
            "token with write access",
        ),
    )

    uri: OutputUri = Field(
        description="s3://BUCKET/PREFIX, pvc://CLAIM/PATH or file:///PATH (the artifact goes under ADAPTERNAME/), "
        "or hf://ORG/NAME: a Hub model repository the adapter is pushed to, with a model card."
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret with a Hub token allowed to write the hf:// repository; never logged or in status.",
    )
    adapter_name: ResourceName | None = Field(default=None, description="Adapter to publish (default: the job name).")
    merge_weights: bool = Field(default=False, description="Also export merged full weights.")
    adapter_retention: Literal["Retain", "DeleteWithJob"] = Field(
        default="Retain", description="Retain keeps the Adapter when the job is deleted."
    )
