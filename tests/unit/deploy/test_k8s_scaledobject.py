"""The workers' KEDA ScaledObject: KEDA's CRD has no schema in kubernetes-validate, so it is
checked against the fields KEDA documents (tests/k8s_files.py names the pages), and against the
settings it must agree with: the workers' group, topic and bootstrap, and at most as many
replicas as the articles topic has partitions."""

from __future__ import annotations

from typing import Any

import pytest
from k8s_files import (
    BASE,
    PRODUCTION,
    deployments,
    objects,
    of_kind,
    patches,
    scaled_object_problems,
    settings_env,
)

SCALED = of_kind(objects(BASE), "ScaledObject")


def merged(overlay: Any) -> dict[str, Any]:
    """The base's ScaledObject with ``overlay``'s patch applied to its spec (top-level keys)."""
    (obj,) = SCALED.values()
    if overlay is None:
        return obj
    patch = patches(overlay)[("ScaledObject", obj["metadata"]["name"])]
    assert not scaled_object_problems(patch, complete=False), patch
    return {**obj, "spec": {**obj["spec"], **patch["spec"]}}


@pytest.mark.parametrize("overlay", [None, PRODUCTION], ids=["base", "production"])
def test_the_scaled_object_has_only_fields_keda_documents(overlay: Any) -> None:
    problems = scaled_object_problems(merged(overlay))
    assert not problems, problems


@pytest.mark.parametrize("overlay", [None, PRODUCTION], ids=["base", "production"])
def test_workers_scale_on_their_groups_lag_up_to_the_partition_count(overlay: Any) -> None:
    obj = merged(overlay)
    settings = settings_env(overlay)
    spec = obj["spec"]
    target = spec["scaleTargetRef"]
    workers = deployments(objects(BASE))[target["name"]]
    assert workers["spec"]["template"]["spec"]["containers"][0]["args"][:1] == ["consume"]
    assert target.get("kind", "Deployment") == "Deployment"
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == settings["NEWSSTREAM_KAFKA_GROUP_ID"]
    assert meta["topic"] == settings["NEWSSTREAM_KAFKA_TOPIC"]
    assert meta["bootstrapServers"] == settings["NEWSSTREAM_KAFKA_BOOTSTRAP"]
    assert meta.get("allowIdleConsumers", "false") == "false"
    # Workers beyond the partition count get no partition: they only stand by.
    assert spec["maxReplicaCount"] <= int(settings["NEWSSTREAM_KAFKA_PARTITIONS"]), spec
    # Never scaled to zero: lag nobody consumes is not seen (KEDA's kafka scaler notes).
    assert spec.get("minReplicaCount", 0) >= 1


def test_the_checker_rejects_what_keda_does_not_document() -> None:
    """The checker the tests above rely on (a checker that accepts anything checks nothing)."""
    good = merged(None)
    assert not scaled_object_problems(good)

    def broken(**spec: Any) -> list[str]:
        return scaled_object_problems({**good, "spec": {**good["spec"], **spec}})

    assert broken(maxReplicas=6), "a misspelt field"
    assert broken(minReplicaCount=7, maxReplicaCount=6), "min above max"
    assert broken(maxReplicaCount="6"), "a string count"
    assert broken(scaleTargetRef={"kind": "Deployment"}), "no target name"
    assert broken(triggers=[]), "no trigger"
    kafka = good["spec"]["triggers"][0]
    for metadata in (
        {**kafka["metadata"], "lagThreshold": 500},
        {**kafka["metadata"], "allowIdleConsumers": False},
        {**kafka["metadata"], "offsetResetPolicy": "smallest"},
        {**kafka["metadata"], "consumerGroupId": "x"},
        {k: v for k, v in kafka["metadata"].items() if k != "consumerGroup"},
    ):
        assert broken(triggers=[{**kafka, "metadata": metadata}]), metadata
