"""``make_batch_job``: the Kubernetes manifests of a batch run, compared as dict literals;
``mlhub batch --k8s-job`` prints them from the command's own options."""

import io

import pytest
import yaml

from mlhub import cli
from mlhub.batch.cli import print_job
from mlhub.batch.errors import InvalidBatch
from mlhub.batch.kubernetes import make_batch_job

LABELS = {"app.kubernetes.io/name": "mlhub-batch", "mlhub/batch-job": "defect-nightly"}


def test_a_job_runs_the_command_with_secrets_and_a_state_volume():
    job = make_batch_job(
        "defect-nightly",
        image="mlhub/serving-python:0.1",
        model="alice/defect-rf",
        source="postgresql://batch:$(PGPASSWORD)@db/fab",
        dest="postgresql://batch:$(PGPASSWORD)@db/fab?table=defect_scores",
        args=["--table", "wafers"],
        namespace="mlhub-models",
        secret_env={"MLHUB_TOKEN": ("defect-batch", "api-key"), "PGPASSWORD": ("fab-db", "pw")},
        env={"MLHUB_URL": "http://proxy-public"},
    )
    assert job == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "defect-nightly", "labels": LABELS, "namespace": "mlhub-models"},
        "spec": {
            "backoffLimit": 6,
            "ttlSecondsAfterFinished": 604800,
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    # the restricted Pod Security Standard (tests/support/pod_security.py)
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "runAsGroup": 1000,
                        "fsGroup": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "batch",
                            "image": "mlhub/serving-python:0.1",
                            "command": [
                                "mlhub",
                                "batch",
                                "--model",
                                "alice/defect-rf",
                                "--source",
                                "postgresql://batch:$(PGPASSWORD)@db/fab",
                                "--dest",
                                "postgresql://batch:$(PGPASSWORD)@db/fab?table=defect_scores",
                                "--table",
                                "wafers",
                                "--state",
                                "/var/lib/mlhub-batch/defect-nightly.jsonl",
                            ],
                            "env": [
                                {
                                    "name": "MLHUB_TOKEN",
                                    "valueFrom": {
                                        "secretKeyRef": {"name": "defect-batch", "key": "api-key"}
                                    },
                                },
                                {
                                    "name": "PGPASSWORD",
                                    "valueFrom": {"secretKeyRef": {"name": "fab-db", "key": "pw"}},
                                },
                                {"name": "MLHUB_URL", "value": "http://proxy-public"},
                            ],
                            "volumeMounts": [
                                {"name": "state", "mountPath": "/var/lib/mlhub-batch"}
                            ],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                    "volumes": [{"name": "state", "emptyDir": {}}],
                },
            },
        },
    }


def test_a_schedule_makes_a_cronjob_that_never_overlaps_and_a_claim_keeps_state():
    cron = make_batch_job(
        "defect-nightly",
        image="img",
        model="m",
        source="s3://lake/wafers",
        dest="s3://lake/scores",
        schedule="0 2 * * *",
        state_claim="batch-state",
        resources={"limits": {"memory": "2Gi"}},
        service_account="batch",
    )
    assert cron["kind"] == "CronJob"
    assert cron["spec"]["schedule"] == "0 2 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "state", "persistentVolumeClaim": {"claimName": "batch-state"}}
    ]
    assert pod["serviceAccountName"] == "batch"
    assert pod["containers"][0]["resources"] == {"limits": {"memory": "2Gi"}}
    assert "namespace" not in cron["metadata"]


def test_the_command_prints_itself_as_a_manifest_without_secrets():
    parser, _ = cli.build_parser()
    argv = ["batch", "--model", "alice/lr", "--source", "sqlite:///f.db", "--table", "w"]
    argv += ["--dest", "sqlite:///f.db?table=s", "--concurrency", "8", "--k8s-job", "lr-daily"]
    args = parser.parse_args([*argv, "--image", "img", "--token-secret", "lr-key:key"])
    out = io.StringIO()
    assert print_job(args, out) == 0
    job = yaml.safe_load(out.getvalue())
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][2:] == [
        "--model",
        "alice/lr",
        "--source",
        "sqlite:///f.db",
        "--dest",
        "sqlite:///f.db?table=s",
        "--table",
        "w",
        "--concurrency",
        "8",
        "--state",
        "/var/lib/mlhub-batch/lr-daily.jsonl",
    ]
    assert container["env"][0]["valueFrom"] == {"secretKeyRef": {"name": "lr-key", "key": "key"}}
    with pytest.raises(InvalidBatch, match="never goes into a manifest"):
        print_job(parser.parse_args([*argv, "--image", "img", "--token", "mlhk_x"]))
    with pytest.raises(InvalidBatch, match="needs --image"):
        print_job(parser.parse_args(argv))
