"""Managed (lifecycle) mode for the nodes: ``detect_node --managed`` (launch: ``managed:=true``).

The node class keeps all the logic in four steps (``setup``, ``start``, ``stop``, ``teardown``) that the
unmanaged node runs in its constructor; :func:`managed` makes the same class a lifecycle node whose
transitions call them, with rclpy.lifecycle's state machine and services (``ros2 lifecycle get/set``):

    configure  -> setup()     load the model, create the publishers; a failure (bad model) is logged
                              with its reason and the node stays unconfigured and alive
    activate   -> start()     subscribe the camera, start working
    deactivate -> stop()      release the subscription, publish nothing more
    cleanup    -> teardown()  destroy the publishers, free the model (and its GPU memory)
    shutdown   -> stop/teardown as needed, then the process ends (status 0)

Only the API rclpy.lifecycle has had since Humble is used: LifecycleNodeMixin (mixed into the node
class, as rclpy's own LifecycleNode mixes it into Node), LifecycleState and TransitionCallbackReturn.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence
from typing import Any

import rclpy
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn

from slimyolo_ros.errors import SlimyoloError

MANAGED_FLAG = "--managed"
END_DELAY_S = 0.2  # after shutdown: time for the transition's answer to leave before the context ends

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def node_class(cls: type, argv: Sequence[str] | None = None) -> type:
    """``cls``, or its managed form when the command line (outside ``--ros-args ... --``) has
    ``--managed``."""
    return managed(cls) if MANAGED_FLAG in _non_ros_args(sys.argv if argv is None else argv) else cls


def _non_ros_args(argv: Sequence[str]) -> list[str]:
    # Not rclpy's remove_ros_args: it raises on a bad ROS argument (--ros-args --bogus) here, before
    # run_node can report that as the node's one start-up line.
    out, in_ros = [], False
    for arg in list(argv)[1:]:
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--" and in_ros:
            in_ros = False
        elif not in_ros:
            out.append(arg)
    return out


def managed(cls: type) -> type:
    """``cls`` (a node class with ``managed``, ``setup``, ``start``, ``stop``, ``teardown``) as a
    lifecycle node: constructed unconfigured, its transitions driving those steps."""

    class Managed(_Transitions, cls):
        def __init__(self, **node_kwargs: Any) -> None:
            cls.__init__(self, managed=True, **node_kwargs)
            LifecycleNodeMixin.__init__(self)

    Managed.__name__ = Managed.__qualname__ = f"Managed{cls.__name__}"
    return Managed


class _Transitions(LifecycleNodeMixin):
    """The transition callbacks; ``self.state`` is the node's own account of what it has built."""

    setup_error: str | None = None  # why the last configure failed (for /diagnostics), None after success

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.setup()
        except SlimyoloError as exc:  # the same one-line reasons an unmanaged start exits with
            self.setup_error = " ".join(str(exc).split())
            self.get_logger().error(f"configure failed: {self.setup_error}")
            self.teardown()
            return FAILURE
        self.setup_error = None
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.start()
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        return SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.teardown()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._end_process()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        # A transition raised: back to unconfigured with nothing held, the node alive.
        self.get_logger().error(f"transition failed in state {state.label!r}: releasing everything")
        self._release()
        return SUCCESS

    def _release(self) -> None:
        if self.state == "active":
            self.stop()
        if self.state != "unconfigured":
            self.teardown()

    def _end_process(self) -> None:
        """Shut the context down once the shutdown transition has been answered; the node's spin loop
        (ros/spin.py) then ends and the process exits 0, as after Ctrl-C."""
        timer = None

        def end() -> None:
            timer.cancel()
            rclpy.try_shutdown(context=self.context)

        timer = self.create_timer(END_DELAY_S, end)


def release_memory(cuda: bool) -> None:
    """After the model's last reference is dropped: collect it now, and give its GPU memory back to
    the device (torch's caching allocator keeps it otherwise)."""
    gc.collect()
    if cuda and "torch" in sys.modules:
        import torch

        torch.cuda.empty_cache()
