"""ROS 2 adapters over the core: the lifecycle node (``carpose_node``), message and image conversion,
DDS settings and rosbag2 I/O. They import the core, never the other way round; this package's
``__init__`` imports nothing, so ``carpose.ros.bag`` and ``carpose.ros.dds`` work without rclpy.
"""
