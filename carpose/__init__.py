"""carpose: which way is every car in the image facing.

The runtime core (convention, crop, and later detect/estimate) is plain Python with no ROS import;
the ROS 2 node is a thin adapter over it. Offline data generation and training live in ``training/``.
"""

__version__ = "0.1.0"
