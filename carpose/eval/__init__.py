"""Evaluation tools over the core: detection and azimuth scoring, KITTI label folders, reports and
error sheets, ``carpose-det-eval`` and ``carpose-bag-eval`` (which replays rosbag2 bags, offline or
through the ROS node). They import the core and ``carpose.ros``; the core never imports them.
"""
