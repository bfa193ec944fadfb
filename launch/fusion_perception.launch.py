"""Launch the fusion_perception lifecycle node with the package's parameter file.

    ros2 launch fusion_perception fusion_perception.launch.py namespace:=robot1 \
        ir_image:=/thermal/image_raw visible_image:=/camera/image_raw

The node activates itself (``autostart: true`` in the YAML); set it false to hand the transitions
to a lifecycle manager. Every value comes from config/fusion_perception.yaml (or ``params_file``):
the launch file passes values through and sets no defaults of its own.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from launch import LaunchDescription

PACKAGE = "fusion_perception"
EXECUTABLE = "fusion_perception_node"
CONFIG = os.path.join("config", "fusion_perception.yaml")


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
    ]
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
    return LaunchDescription([*args, node])
