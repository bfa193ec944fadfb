"""Launch the fusion_perception lifecycle node with the package's parameter file.

    ros2 launch fusion_perception fusion_perception.launch.py namespace:=robot1 \
        ir_image:=/thermal/image_raw visible_image:=/camera/image_raw

The node activates itself (``autostart: true`` in the YAML); set it false to hand the transitions
to a lifecycle manager. Every value comes from config/fusion_perception.yaml (or ``params_file``):
the launch file passes values through and sets no defaults of its own.

The Fast DDS profile (``dds_profile``: $FASTRTPS_DEFAULT_PROFILES_FILE if set, else the shipped
config/fastdds_large_data.xml) is set for every process this launch starts, camera drivers
included when they are launched after it: a 921 kB frame crosses processes whole only when the
*publisher* uses it too (docs/ROBOT.md).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import LifecycleNode

from launch import LaunchDescription

PACKAGE = "fusion_perception"
EXECUTABLE = "fusion_perception_node"
CONFIG = os.path.join("config", "fusion_perception.yaml")
DDS_PROFILE = os.path.join("config", "fastdds_large_data.xml")
PROFILE_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")  # Fast DDS 2.x, 3.x


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    args = [
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node and its topics"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, CONFIG),
                              description="parameter YAML file"),
        DeclareLaunchArgument("ir_image", default_value="ir/image", description="IR image topic to remap to"),
        DeclareLaunchArgument("visible_image", default_value="visible/image",
                              description="visible image topic to remap to"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
        DeclareLaunchArgument(
            "dds_profile",
            default_value=EnvironmentVariable(PROFILE_VARS[0],
                                              default_value=os.path.join(share, DDS_PROFILE)),
            description="Fast DDS profile for every process of this launch",
        ),
    ]
    env = [SetEnvironmentVariable(var, LaunchConfiguration("dds_profile")) for var in PROFILE_VARS]
    node = LifecycleNode(
        package=PACKAGE,
        executable=EXECUTABLE,
        name="fusion_perception",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file")],
        remappings=[
            ("ir/image", LaunchConfiguration("ir_image")),
            ("visible/image", LaunchConfiguration("visible_image")),
        ],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
    )
    return LaunchDescription([*args, *env, node])
