"""What each adapter and router calls, as each cloud names the permission: the least privilege `failover` needs.

The shipped policy files (configs/iam/aws-policy.json, gcp-role.yaml, azure-role.json) grant exactly these (their
tests hold them to it), and `failover plan --check-permissions` asks each cloud for them. No IO, no SDK.
"""

from __future__ import annotations

# --- AWS: IAM actions ----------------------------------------------------------------------------------------------
AWS_EC2_READ = ("ec2:DescribeInstances", "ec2:DescribeInstanceStatus", "ec2:DescribeAvailabilityZones")
AWS_EC2_WRITE = ("ec2:StopInstances", "ec2:StartInstances")
AWS_ROUTE53 = ("route53:ListHostedZonesByName", "route53:ListResourceRecordSets", "route53:ChangeResourceRecordSets",
               "route53:GetChange")
AWS_HEALTH = ("health:DescribeEvents",)  # the optional AWS Health signal

# --- GCP: IAM permissions ------------------------------------------------------------------------------------------
GCP_INSTANCE = ("compute.instances.get", "compute.instances.start", "compute.instances.stop")
GCP_PROJECT = ("compute.regions.get", "compute.zones.get", "compute.zoneOperations.get")
GCP_DNS = ("dns.managedZones.get", "dns.managedZones.list", "dns.resourceRecordSets.list", "dns.changes.create",
           "dns.changes.get", "dns.resourceRecordSets.create", "dns.resourceRecordSets.delete",
           "dns.resourceRecordSets.update")

# --- Azure: RBAC actions -------------------------------------------------------------------------------------------
AZURE_VM = ("Microsoft.Compute/virtualMachines/read", "Microsoft.Compute/virtualMachines/start/action",
            "Microsoft.Compute/virtualMachines/deallocate/action", "Microsoft.Compute/virtualMachines/powerOff/action")
AZURE_GROUP = ("Microsoft.Compute/virtualMachines/read",)  # the zone view lists the group's VMs
AZURE_DNS = ("Microsoft.Network/dnsZones/read", "Microsoft.Network/dnsZones/recordsets/read",
             *(f"Microsoft.Network/dnsZones/{kind}/{verb}" for kind in ("A", "AAAA", "CNAME")
               for verb in ("read", "write", "delete")))
