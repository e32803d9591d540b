"""nslab: the seed deployment's VRRP cluster in Linux network namespaces.

Builds a vSwitch (a Linux bridge), node namespaces and a client namespace; runs keepalived or
pyvrrp on each node; injects faults; and measures what clients feel with a UDP probe. Used by
tests/netns, the failover benchmark and `make demo`. See netns-lab/README.md.
"""

from nslab.configs import keepalived_config, pyvrrp_config
from nslab.lab import DaemonKind, Lab, LabTimeout, Probe, cleanup, list_labs
from nslab.probe import Handover, ProbeReport, Segment, SplitBrain, TargetReport, analyse
from nslab.sniff import Advert, AdvertWatch
from nslab.spec import ClusterSpec, HealthCheckSpec, InstanceSpec, NodeSpec, seed_cluster
from nslab.system import LabError

__all__ = [
    "Advert",
    "AdvertWatch",
    "ClusterSpec",
    "DaemonKind",
    "Handover",
    "HealthCheckSpec",
    "InstanceSpec",
    "Lab",
    "LabError",
    "LabTimeout",
    "NodeSpec",
    "Probe",
    "ProbeReport",
    "Segment",
    "SplitBrain",
    "TargetReport",
    "analyse",
    "cleanup",
    "keepalived_config",
    "list_labs",
    "pyvrrp_config",
    "seed_cluster",
]
