"""rclpy APIs that differ between the supported distros (Humble, Jazzy, Kilted), each behind one function.

Every rclpy name the package uses exists in Humble's rclpy (test/test_rclpy_api.py checks them against
its public API), except those used here inside an ``if hasattr(...)`` whose ``else`` is a fallback
that behaves the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def on_parameter_update(node: Any, validate: Callable[[list], Any], apply: Callable[[list], None]) -> None:
    """Parameter updates on ``node``: ``validate(params)`` returns a SetParametersResult (a refusal names
    the reason); once accepted, ``apply(params)`` puts them in force.

    Iron and later: ``validate`` is an on-set callback and ``apply`` a post-set callback, so nothing is
    applied before rclpy has stored every value. Humble has on-set callbacks only: there ``apply`` runs
    inside the one on-set callback, right after a successful ``validate``. rclpy checks the descriptors
    (type, range, read-only) before any on-set callback and stores the values right after the last one,
    and this is the node's only on-set callback, so the outcome is the same.
    """
    if hasattr(node, "add_post_set_parameters_callback"):
        node.add_on_set_parameters_callback(validate)
        node.add_post_set_parameters_callback(apply)
    else:
        def validate_then_apply(params: list) -> Any:
            result = validate(params)
            if result.successful:
                apply(params)
            return result

        node.add_on_set_parameters_callback(validate_then_apply)
