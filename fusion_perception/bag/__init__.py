"""Bag layer: make ROS 2 bags from image-pair folders, evaluate the pipeline on them, replay them live.

rosbags (pure Python, sqlite3 and MCAP) + the runtime layer; no ROS install needed except for
``play``, which publishes through rclpy. No torch on this path.
"""
