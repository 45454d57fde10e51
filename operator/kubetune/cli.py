"""`kubetune`: validate, render, estimate and run manifests, print CRDs, run the operator.

The CLI is an edge: it reads files, validates once with the same models and CEL rules the API
server uses, and prints one line per problem. Bad input never produces a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel

from kubetune.api.crd.build import all_crds
from kubetune.api.problems import Problem, validate
from kubetune.api.resources import API_VERSION
from kubetune.api.v1alpha1 import Adapter, FineTuneJob

if TYPE_CHECKING:
    from kubetune.estimate_report import Gpu

KINDS: dict[str, type[BaseModel]] = {"FineTuneJob": FineTuneJob, "Adapter": Adapter}


class InputError(Exception):
    """A file that cannot be read or parsed; the message is the whole story."""


def load_documents(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields (label, document) for each YAML document; label is FILE or FILE#N for multi-doc files."""
    try:
        text = path.read_text()
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InputError(f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    if not documents:
        raise InputError(f"{path}: no YAML documents found")
    for index, document in enumerate(documents):
        label = str(path) if len(documents) == 1 else f"{path}#{index + 1}"
        if not isinstance(document, dict):
            raise InputError(f"{label}: expected a Kubernetes object (a mapping), got {type(document).__name__}")
        yield label, document


def check_document(document: dict[str, Any]) -> tuple[BaseModel | None, list[Problem]]:
    kind = document.get("kind")
    model = KINDS.get(str(kind))
    if model is None:
        expected = " or ".join(KINDS)
        return None, [Problem("kind", f'"{kind}" is not a kubetune kind: use {expected} ({API_VERSION})')]
    return validate(model, document)


def cmd_validate(files: Sequence[Path]) -> int:
    failed = False
    checked = 0
    for path in files:
        try:
            for label, document in load_documents(path):
                _, problems = check_document(document)
                checked += 1
                for problem in problems:
                    print(problem.line(label))
                failed = failed or bool(problems)
        except InputError as error:
            print(error)
            failed = True
    if not failed:
        print(f"{checked} object(s) valid", file=sys.stderr)
    return 1 if failed else 0


def cmd_crds() -> int:
    print(yaml.safe_dump_all(list(all_crds().values()), sort_keys=False, width=120), end="")
    return 0


def cmd_version() -> int:
    try:
        package = version("kubetune")
    except PackageNotFoundError:
        package = "unknown"
    print(f"kubetune {package} (API {API_VERSION})")
    return 0


def _single_finetunejob(path: Path) -> dict[str, Any] | None:
    """The one FineTuneJob in `path`, or None after printing why not (one line per problem)."""
    try:
        documents = list(load_documents(path))
    except InputError as error:
        print(error)
        return None
    if len(documents) != 1 or documents[0][1].get("kind") != "FineTuneJob":
        print(f"{path}: expected exactly one FineTuneJob document")
        return None
    label, document = documents[0]
    _, problems = check_document(document)
    for problem in problems:
        print(problem.line(label))
    return None if problems else document


def cmd_render(path: Path) -> int:
    from kubetune.render.bundle import render_bundle
    from kubetune.settings import OperatorSettings

    document = _single_finetunejob(path)
    if document is None:
        return 1
    manifests = render_bundle(document, OperatorSettings.from_env(os.environ))
    print(yaml.safe_dump_all(manifests, sort_keys=False, width=120), end="")
    return 0


def cmd_run(path: Path, workdir: Path, pvc_root: Path) -> int:
    from kubetune.local_run import run_locally

    document = _single_finetunejob(path)
    return 1 if document is None else run_locally(document, workdir.resolve(), pvc_root.resolve())


def _gpus(requested: str | None, extra: Sequence[str]) -> list[Gpu] | str:
    """The GPUs to size for: `--gpu PRODUCT[=GiB]` if given, else every known product; or why not."""
    from kubetune.api.estimate import GIB
    from kubetune.api.gpu_products import GPU_MEMORY_GIB, gpu_memory_bytes
    from kubetune.estimate_report import Gpu

    wanted: dict[str, int | None] = {}
    for item in extra:
        name, sep, gib = item.partition("=")
        try:
            wanted[name] = int(float(gib) * GIB) if sep else gpu_memory_bytes(name)
        except ValueError:
            return f"--gpu {item}: memory must be a number of GiB, e.g. {name}=80"
    if not wanted:
        wanted = {name: gpu_memory_bytes(name) for name in GPU_MEMORY_GIB}
    if requested and requested not in wanted:
        wanted = {requested: gpu_memory_bytes(requested)} | wanted
    unknown = [name for name, memory in wanted.items() if memory is None]
    if unknown:
        return f"GPU product {', '.join(unknown)} has no known memory: pass --gpu PRODUCT=GiB"
    return [Gpu(name, memory or 0, requested=name == requested) for name, memory in wanted.items()]


def cmd_estimate(path: Path, model_config: Path | None, gpu_args: Sequence[str]) -> int:
    from kubetune.api.model_shape import UnsupportedModelError, shape_from_config
    from kubetune.estimate_report import estimate_report
    from kubetune.model_config import ModelConfigError, read_model_config

    document = _single_finetunejob(path)
    if document is None:
        return 1
    spec = FineTuneJob.model_validate(document).spec
    gpus = _gpus(spec.resources.gpu_product, gpu_args)
    if isinstance(gpus, str):
        print(gpus)
        return 1
    try:
        config = read_model_config(spec.base_model.uri, spec.base_model.revision, os.environ, model_config)
        shape = shape_from_config(config)
    except (ModelConfigError, UnsupportedModelError) as error:
        print(f"{path}: {error}")
        return 1
    print(estimate_report(spec, shape, gpus, model_type=str(config.get("model_type"))))
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    """`kubetune lab list|run|manifests`; the lab code (and matplotlib) load only here."""
    from kubetune.labs.definition import LabError, available
    from kubetune.labs.runner import manifests, run_lab

    if args.lab_command == "run" and args.cluster:
        return _lab_on_cluster(args)
    try:
        if args.lab_command == "list":
            print("\n".join(available(args.labs_dir)) or f"no labs in {args.labs_dir}")
            return 0
        if args.lab_command == "manifests":
            documents = manifests(args.labs_dir, args.name, setting_name=args.setting, model_uri=args.model_uri)
            print(yaml.safe_dump_all(documents, sort_keys=False, width=120), end="")
            return 0
        model = args.model.resolve() if args.model else None
        report = run_lab(args.labs_dir, args.name, setting_name=args.setting, model_dir=model, out=args.out.resolve())
    except LabError as error:
        print(f"kubetune lab: {error}")
        return 1
    print(f"kubetune lab: report in {report}")
    return 0


def _lab_on_cluster(args: argparse.Namespace) -> int:
    """`kubetune lab run NAME --cluster`: the kubernetes client loads only here."""
    from kubetune.lab_cluster import ClusterLab, connect
    from kubetune.labs.definition import LabError
    from kubetune.labs.runner import run_lab_on_cluster

    if args.model is not None:
        print("kubetune lab: --model is a local directory; on a cluster pass --model-uri (or keep the lab's model)")
        return 2
    try:
        backend = ClusterLab(connect(args.kubeconfig), args.namespace, timeout_seconds=args.timeout)
        report = run_lab_on_cluster(
            args.labs_dir,
            args.name,
            setting_name=args.setting,
            model_uri=args.model_uri,
            backend=backend,
            namespace=args.namespace,
            out=args.out.resolve(),
        )
    except LabError as error:
        print(f"kubetune lab: {error}")
        return 1
    print(f"kubetune lab: report in {report}")
    return 0


def _lab_parser(commands: Any) -> None:
    lab = commands.add_parser("lab", help="the code labs: run one and get a report (labs/README.md)")
    lab_commands = lab.add_subparsers(dest="lab_command", required=True, metavar="LAB_COMMAND")
    for name, text in (
        ("list", "list the labs"),
        ("run", "run a lab (here, or on a cluster with --cluster) and write its report"),
        ("manifests", "print a lab's FineTuneJobs/Adapters for a cluster (setting applied)"),
    ):
        sub = lab_commands.add_parser(name, help=text)
        sub.add_argument("--labs-dir", type=Path, default=Path("labs"), help="folder of labs (default: labs)")
        if name == "list":
            continue
        sub.add_argument("name", metavar="NAME", help="lab name (see `kubetune lab list`) or a lab folder")
        sub.add_argument("--setting", default="small", help="small (CPU, tiny model) or gpu (default: small)")
        if name == "manifests":
            sub.add_argument("--model-uri", help="base model URI replacing the lab's model")
            continue
        sub.add_argument("--model", type=Path, help="local base model directory (the small setting needs one)")
        sub.add_argument("--out", type=Path, default=Path(".kubetune/labs"), help="reports folder")
        cluster = sub.add_argument_group("on a cluster, through the operator (labs/README.md)")
        cluster.add_argument("--cluster", action="store_true", help="apply the lab's objects and report from status")
        cluster.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, KUBECONFIG, ~/.kube/config)")
        cluster.add_argument(
            "--namespace", default="kubetune-labs", help="for the lab's objects (default: %(default)s)"
        )
        cluster.add_argument("--model-uri", help="base model URI replacing the lab's model (default: the lab's)")
        cluster.add_argument(
            "--timeout",
            type=float,
            default=3600.0,
            help="seconds to wait for each wave of objects (default: %(default)s)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubetune", description="Declarative LLM fine-tuning on Kubernetes.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser("validate", help="validate FineTuneJob/Adapter manifests (exit 1 on problems)")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    render = commands.add_parser("render", help="print the manifests the operator would create (GitOps review)")
    render.add_argument("file", type=Path, metavar="FILE")
    run = commands.add_parser("run", help="train a FineTuneJob on this machine with the same trainer")
    run.add_argument("file", type=Path, metavar="FILE")
    run.add_argument("--workdir", type=Path, default=Path(".kubetune/run"), help="cache, scratch, checkpoints")
    run.add_argument("--pvc-root", type=Path, default=Path(".kubetune/pvc"), help="pvc://CLAIM/PATH -> ROOT/CLAIM/PATH")
    size = commands.add_parser(
        "estimate", help="memory per GPU and the method auto picks, from the model's config only (no weights)"
    )
    size.add_argument("file", type=Path, metavar="FILE")
    size.add_argument("--model-config", type=Path, help="config.json or model directory (for pvc:// and s3:// models)")
    size.add_argument(
        "--gpu", action="append", default=[], metavar="PRODUCT[=GiB]", help="size for this GPU (repeatable)"
    )
    _lab_parser(commands)
    commands.add_parser("operator", help="run the operator (kopf); see `kubetune operator --help`", add_help=False)
    commands.add_parser("crds", help="print the CustomResourceDefinitions")
    commands.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["operator"]:
        from kubetune.handlers import run_operator

        return run_operator(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "validate":
        return cmd_validate(args.files)
    if args.command == "render":
        return cmd_render(args.file)
    if args.command == "run":
        return cmd_run(args.file, args.workdir, args.pvc_root)
    if args.command == "estimate":
        return cmd_estimate(args.file, args.model_config, args.gpu)
    if args.command == "lab":
        return cmd_lab(args)
    if args.command == "crds":
        return cmd_crds()
    return cmd_version()


if __name__ == "__main__":
    sys.exit(main())
