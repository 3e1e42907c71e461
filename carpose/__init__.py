"""carpose: which way is every car in the image facing.

This package's own modules are the runtime core (convention, crop, azimuth head, networks, detect,
pose, TensorRT backend, track, draw, pipeline, ``carpose-infer``): plain Python with no ROS import.
``carpose.ros`` adapts it to ROS 2 (the lifecycle node, message conversion, DDS settings, rosbag2
I/O) and ``carpose.eval`` scores it (KITTI folders, det-eval, bag-eval). Offline data generation and
training live in ``training/``. Imports point down only: core <- ros <- eval <- training
(tests/test_layers.py).
"""

__version__ = "0.1.0"
