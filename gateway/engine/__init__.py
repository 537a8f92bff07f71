"""The play engine: runs playbook steps in jobs, reacts to replies, records activities."""
