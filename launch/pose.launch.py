"""``ros2 launch carpose pose.launch.py image_topic:=/camera/image_raw``: the carpose node with its
parameter file. Needs a full ROS 2 install (``launch`` and ``launch_ros`` are not on PyPI).

Arguments: image_topic (remaps the node's ``image`` input), params_file (default: the installed
share/carpose/config/carpose.yaml, or ../config/carpose.yaml next to this file in a checkout),
backend (pose_backend: auto | onnxruntime | tensorrt | torch), namespace. Sets
FASTDDS_DEFAULT_PROFILES_FILE (HD images over Fast DDS, carpose.ros.dds) unless Fast DDS is already
configured in the environment.
"""

from pathlib import Path

from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def _default_params_file() -> str:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        return str(Path(get_package_share_directory("carpose")) / "config" / "carpose.yaml")
    except (ImportError, PackageNotFoundError):  # a source checkout that was never installed
        return str(Path(__file__).resolve().parents[1] / "config" / "carpose.yaml")


def _dds_settings() -> list:
    """The Fast DDS profile for HD images (carpose.ros.dds) for every process this launch starts after
    it (a camera driver included with this file too), unless Fast DDS is configured already."""
    try:
        from carpose.ros.dds import recommended_env
    except ImportError:  # carpose not importable here: the node still sets it for itself
        return []
    return [SetEnvironmentVariable(k, v) for k, v in recommended_env().items()]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *_dds_settings(),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic to read (remaps 'image')"),
        DeclareLaunchArgument("params_file", default_value=_default_params_file(),
                              description="YAML with the node's parameters"),
        DeclareLaunchArgument("backend", default_value="auto",
                              description="pose backend: auto | onnxruntime | tensorrt | torch"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        Node(
            package="carpose",
            executable="carpose_node",
            name="carpose",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file"), {"pose_backend": LaunchConfiguration("backend")}],
            remappings=[("image", LaunchConfiguration("image_topic"))],
            output="screen",
            emulate_tty=True,
        ),
    ])
