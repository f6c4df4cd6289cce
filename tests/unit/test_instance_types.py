from __future__ import annotations

import botocore.session

from opennimble.domain import instance_types


def test_the_table_covers_exactly_the_models_instance_types() -> None:
    model = botocore.session.get_session().get_service_model("nimble")
    enum = set(model.shape_for("StreamingInstanceType").enum)
    assert set(instance_types.TABLE) == enum


def test_ec2_figures_and_scaling() -> None:
    xlarge = instance_types.resources("g4dn.xlarge")
    assert (xlarge.vcpus, xlarge.memory_mib, xlarge.gpus) == (4, 16384, 1)
    quarter = instance_types.resources("g4dn.12xlarge", 0.25)
    assert (quarter.vcpus, quarter.memory_mib, quarter.gpus) == (12, 49152, 1)
    tiny = instance_types.resources("g4dn.xlarge", 0.01)
    assert (tiny.vcpus, tiny.memory_mib, tiny.gpus) == (1, 256, 1)
