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
# `failover replace` on a site with `launch` options (providers/launch.py): run_instances with tags on create; its
# reads (DescribeInstances by the key tag) and the start are the failover's. No iam:PassRole: only a launch template
# that gives the instance a profile needs it, scoped to that role (docs/recorded-topology.md)
AWS_EC2_LAUNCH = ("ec2:RunInstances", "ec2:CreateTags")

# --- GCP: IAM permissions ------------------------------------------------------------------------------------------
GCP_INSTANCE = ("compute.instances.get", "compute.instances.start", "compute.instances.stop")
GCP_PROJECT = ("compute.regions.get", "compute.zones.get", "compute.zoneOperations.get")
GCP_SERVICE_HEALTH = ("servicehealth.events.list",)  # the Service Health signal (option `service_health`)
GCP_HOST_ERRORS = ("compute.globalOperations.aggregatedList",)  # GET aggregated/operations (option `host_errors`)
# `failover replace`: instances.insert with labels, a boot disk from an image, a NIC on a subnetwork, and the look-up
# of the machine by its key label; from an instance template also the template itself and what templates carry
# (metadata such as a startup script, network tags). No service-account permissions (docs/recorded-topology.md)
GCP_LAUNCH = ("compute.instances.create", "compute.instances.list", "compute.instances.setLabels",
              "compute.disks.create", "compute.images.useReadOnly", "compute.subnetworks.use")
GCP_LAUNCH_TEMPLATE = ("compute.instanceTemplates.useReadOnly", "compute.instances.setMetadata",
                       "compute.instances.setTags")
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
# `failover replace`: virtualMachines createOrUpdate with its OS disk from an image and its NIC made from a
# `networkInterfaceConfigurations` entry (so the NIC is written and joined), on the launch's subnet, from a gallery
# image version (or a managed image)
AZURE_LAUNCH = ("Microsoft.Compute/virtualMachines/write", "Microsoft.Compute/disks/write",
                "Microsoft.Network/networkInterfaces/write", "Microsoft.Network/networkInterfaces/join/action")
AZURE_LAUNCH_SUBNET = "Microsoft.Network/virtualNetworks/subnets/join/action"
AZURE_LAUNCH_IMAGE = {"gallery": "Microsoft.Compute/galleries/images/versions/read",
                      "managed": "Microsoft.Compute/images/read"}
AZURE_DNS = ("Microsoft.Network/dnsZones/read", "Microsoft.Network/dnsZones/recordsets/read",
             *(f"Microsoft.Network/dnsZones/{kind}/{verb}" for kind in ("A", "AAAA", "CNAME")
               for verb in ("read", "write", "delete")))
