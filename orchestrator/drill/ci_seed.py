"""Seed a fresh moto or localstack with what a config names: one tagged EC2 instance per replica on an AWS site,
and the engines' Route 53 zones. For the CI dry run (`failover plan --assume-primary-lost`).

    python -m orchestrator.drill.ci_seed --config configs/ci-moto.yaml     # uses AWS_ENDPOINT_URL
"""

from __future__ import annotations

import argparse
import sys
import uuid

from orchestrator.config import load_config


def seed(config_path: str) -> dict[str, str]:
    import boto3

    topology = load_config(config_path).topology
    created: dict[str, str] = {}
    for engine in topology.engines.values():
        for replica in engine.replicas:
            site = topology.sites[replica.site]
            if site.provider != "aws":
                continue
            ec2 = boto3.client("ec2", region_name=site.region, endpoint_url=site.endpoint_url)
            image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
            placement = {"AvailabilityZone": site.zones[0]} if site.zones else {}
            answer = ec2.run_instances(
                ImageId=image, MinCount=1, MaxCount=1, Placement=placement,
                TagSpecifications=[{"ResourceType": "instance",
                                    "Tags": [{"Key": "Name", "Value": replica.instance}]}])
            created[replica.instance] = answer["Instances"][0]["InstanceId"]
        if engine.dns is not None and engine.dns.provider == "aws" and "." in engine.dns.zone_id:
            route53 = boto3.client("route53", region_name="us-east-1", endpoint_url=engine.dns.endpoint_url)
            zone = route53.create_hosted_zone(Name=engine.dns.zone_id, CallerReference=uuid.uuid4().hex)
            created[engine.dns.zone_id] = zone["HostedZone"]["Id"].split("/")[-1]
    return created


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.drill.ci_seed", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    for name, made in seed(args.config).items():
        print(f"{name}: {made}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
