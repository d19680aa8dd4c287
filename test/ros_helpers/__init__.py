"""Small ROS 2 helpers for the tests: a probe node spinning in a thread, node subprocesses."""
