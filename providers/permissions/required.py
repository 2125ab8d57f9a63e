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
AWS_HEALTH = ("health:DescribeEvents",)  # the AWS Health signal (option `health_api`)

# --- GCP: IAM permissions ------------------------------------------------------------------------------------------
GCP_INSTANCE = ("compute.instances.get", "compute.instances.start", "compute.instances.stop")
GCP_PROJECT = ("compute.regions.get", "compute.zones.get", "compute.zoneOperations.get")
GCP_SERVICE_HEALTH = ("servicehealth.events.list",)  # the Service Health signal (option `service_health`)
GCP_HOST_ERRORS = ("compute.globalOperations.aggregatedList",)  # GET aggregated/operations (option `host_errors`)
GCP_DNS = ("dns.managedZones.get", "dns.managedZones.list", "dns.resourceRecordSets.list", "dns.changes.create",
           "dns.changes.get", "dns.resourceRecordSets.create", "dns.resourceRecordSets.delete",
           "dns.resourceRecordSets.update")

# --- Azure: RBAC actions -------------------------------------------------------------------------------------------
AZURE_VM = ("Microsoft.Compute/virtualMachines/read", "Microsoft.Compute/virtualMachines/start/action",
            "Microsoft.Compute/virtualMachines/deallocate/action", "Microsoft.Compute/virtualMachines/powerOff/action")
AZURE_GROUP = ("Microsoft.Compute/virtualMachines/read",  # the zone view lists the group's VMs
               "Microsoft.Compute/locations/operations/read")  # a power-off's or deallocate's progress
AZURE_RESOURCE_HEALTH = ("Microsoft.ResourceHealth/availabilityStatuses/read",)  # option `resource_health`, per VM
AZURE_CHECK = "Microsoft.Authorization/permissions/read"  # asking the permissions API itself (the dry run only)
AZURE_DNS = ("Microsoft.Network/dnsZones/read", "Microsoft.Network/dnsZones/recordsets/read",
             *(f"Microsoft.Network/dnsZones/{kind}/{verb}" for kind in ("A", "AAAA", "CNAME")
               for verb in ("read", "write", "delete")))
