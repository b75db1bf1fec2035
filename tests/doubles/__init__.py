"""Test doubles of engines that cannot be installed on CI machines."""
