import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from environments.models import Component, Environment, Network

pytestmark = pytest.mark.django_db


@pytest.fixture
def prod():
    return Environment.objects.create(
        name="prod",
        gcp_project="p",
        region="asia-northeast3",
        zones=["asia-northeast3-a", "asia-northeast3-c"],
        registry="r/p/registry",
        requires_approval=True,
        approvals_required=1,
    )


def component(env, network, **overrides):
    fields = dict(
        environment=env,
        network=network,
        name="frontend",
        tier="frontend",
        port=3000,
        probe_kind="http",
        probe_path="/",
        deploy_kind="rolling_mig",
        mig="fe-mig",
        image="frontend",
        size=4,
    )
    fields.update(overrides)
    return Component(**fields)


def test_component_network_must_belong_to_its_environment(prod):
    dev = Environment.objects.create(
        name="dev",
        gcp_project="d",
        region="asia-northeast3",
        zones=["asia-northeast3-a"],
        registry="r",
    )
    dev_host = Network.objects.create(environment=dev, name="host", vpc="dev-vpc")
    with pytest.raises(ValidationError) as exc:
        component(prod, dev_host).full_clean()
    assert "belongs to another environment" in str(exc.value.message_dict["network"])


def test_rolling_mig_needs_its_mig_and_gets_the_default_strategy(prod):
    service = Network.objects.create(environment=prod, name="service", vpc="svc")
    with pytest.raises(ValidationError) as exc:
        component(prod, service, mig="", size=None).full_clean()
    assert set(exc.value.message_dict) == {"mig", "size"}
    ok = component(prod, service)
    ok.full_clean()
    assert ok.strategy == "rolling"


def test_strategy_must_fit_the_deploy_kind(prod):
    service = Network.objects.create(environment=prod, name="service", vpc="svc")
    with pytest.raises(ValidationError) as exc:
        component(prod, service, strategy="blue_green").full_clean()
    assert "rolling_mig allows: rolling, canary" in exc.value.message_dict["strategy"][0]


def test_single_vm_zone_must_be_one_of_the_environments_zones(prod):
    service = Network.objects.create(environment=prod, name="service", vpc="svc")
    vm = component(
        prod,
        service,
        deploy_kind="single_vm",
        mig="",
        size=None,
        instance="vm",
        instance_zone="us-east1-b",
    )
    with pytest.raises(ValidationError) as exc:
        vm.full_clean()
    assert "instance_zone" in exc.value.message_dict


def test_zones_must_be_in_the_region(prod):
    prod.zones = ["asia-northeast3-a", "europe-west1-b"]
    with pytest.raises(ValidationError) as exc:
        prod.full_clean()
    assert "europe-west1-b" in exc.value.message_dict["zones"][0]


def test_database_refuses_approval_without_approvers(prod):
    with pytest.raises(IntegrityError), transaction.atomic():
        Environment.objects.filter(pk=prod.pk).update(approvals_required=0)
    prod.refresh_from_db()
    assert prod.approvals_required == 1


def test_database_refuses_duplicate_component_and_bad_port(prod):
    service = Network.objects.create(environment=prod, name="service", vpc="svc")
    component(prod, service).save()
    with pytest.raises(IntegrityError), transaction.atomic():
        component(prod, service).save()
    with pytest.raises(IntegrityError), transaction.atomic():
        component(prod, service, name="other", port=70000).save()
    assert Component.objects.count() == 1


def test_networks_with_components_uses_prefetched_rows(seed_topology, django_assert_num_queries):
    from environments.fragments import environments

    with django_assert_num_queries(4):
        envs = list(environments())
        groups = {
            e.name: [(n.name, len(cs)) for n, cs in e.networks_with_components()] for e in envs
        }
    assert groups == {"prod": [("service", 4), ("ai", 2)], "dev": [("host", 6)]}
