"""What each ``ec2InstanceType`` of the model stands for: vCPUs, memory and GPUs.

The figures are EC2's own for these instance types; providers turn them into the limits of a
desktop (the local provider's control group, the Slurm provider's ``--cpus-per-task``,
``--mem`` and GPUs), scaled by a per-host factor so that a small host can still run a studio's
launch profiles. A unit test keeps the table equal to the model's ``StreamingInstanceType``.
"""

from __future__ import annotations

import dataclasses
import math

GIB = 1024  # MiB


@dataclasses.dataclass(frozen=True)
class InstanceType:
    vcpus: int
    memory_mib: int
    gpus: int

    def scaled(self, factor: float) -> InstanceType:
        """These resources times ``factor``: at least one vCPU, 256 MiB and, where the type
        has GPUs, one GPU."""
        return InstanceType(
            vcpus=max(1, math.floor(self.vcpus * factor)),
            memory_mib=max(256, math.floor(self.memory_mib * factor)),
            gpus=max(1, math.floor(self.gpus * factor)) if self.gpus else 0,
        )


TABLE: dict[str, InstanceType] = {
    "g4dn.xlarge": InstanceType(4, 16 * GIB, 1),
    "g4dn.2xlarge": InstanceType(8, 32 * GIB, 1),
    "g4dn.4xlarge": InstanceType(16, 64 * GIB, 1),
    "g4dn.8xlarge": InstanceType(32, 128 * GIB, 1),
    "g4dn.12xlarge": InstanceType(48, 192 * GIB, 4),
    "g4dn.16xlarge": InstanceType(64, 256 * GIB, 1),
    "g3.4xlarge": InstanceType(16, 122 * GIB, 1),
    "g3s.xlarge": InstanceType(4, 30 * GIB + GIB // 2, 1),
    "g5.xlarge": InstanceType(4, 16 * GIB, 1),
    "g5.2xlarge": InstanceType(8, 32 * GIB, 1),
    "g5.4xlarge": InstanceType(16, 64 * GIB, 1),
    "g5.8xlarge": InstanceType(32, 128 * GIB, 1),
    "g5.16xlarge": InstanceType(64, 256 * GIB, 1),
}


def resources(instance_type: str, factor: float = 1.0) -> InstanceType:
    """The resources of ``instance_type`` scaled by ``factor`` (KeyError for an unknown type:
    the API admits only the model's enum)."""
    return TABLE[instance_type].scaled(factor)
