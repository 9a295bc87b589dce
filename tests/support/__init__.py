"""Test support for bellad's system tests: a real Mosquitto broker, MQTT clients,
a real PulseAudio capture device fed from a FIFO, and the pytest fixtures over them.

Load the fixtures from the root ``conftest.py`` with
``pytest_plugins = ["tests.support.plugin"]``.
"""
