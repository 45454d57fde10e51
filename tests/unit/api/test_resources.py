"""Resource identities are spelled once (kubetune.api.resources); the models, CRDs and URLs agree with them."""

from __future__ import annotations

import pytest

from kubetune.api.crd.build import all_crds
from kubetune.api.resources import ADAPTER, API_VERSION, FINETUNEJOB, KUBETUNE_RESOURCES, ResourceId
from kubetune.api.v1alpha1 import Adapter, FineTuneJob, TrainerConfig
from kubetune.k8s.interface import path

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("model", "resource"), [(FineTuneJob, FINETUNEJOB), (Adapter, ADAPTER)])
def test_models_and_crds_carry_the_identity(model: type[FineTuneJob | Adapter], resource: ResourceId) -> None:
    assert KUBETUNE_RESOURCES[resource.kind] is resource
    assert model.model_fields["api_version"].default == resource.api_version
    assert model.model_fields["kind"].default == resource.kind == model.__name__
    crd = all_crds()[f"{resource.crd_name}.yaml"]
    names = crd["spec"]["names"]
    assert (crd["spec"]["group"], crd["spec"]["versions"][0]["name"]) == ("kubetune.io", "v1alpha1")
    assert (names["plural"], names["kind"]) == (resource.plural, resource.kind)


def test_trainer_config_speaks_the_same_api_version() -> None:
    assert TrainerConfig.model_fields["api_version"].default == API_VERSION == "kubetune.io/v1alpha1"


def test_urls_by_kind() -> None:
    assert path("FineTuneJob", "ml", "j", "status") == "/apis/kubetune.io/v1alpha1/namespaces/ml/finetunejobs/j/status"
    assert path("Adapter", "ml") == "/apis/kubetune.io/v1alpha1/namespaces/ml/adapters"
    assert path("Job", "ml", "j-train") == "/apis/batch/v1/namespaces/ml/jobs/j-train"
    assert path("Pod", "ml") == "/api/v1/namespaces/ml/pods"
    assert path("RoleBinding", "ml", "r") == "/apis/rbac.authorization.k8s.io/v1/namespaces/ml/rolebindings/r"
