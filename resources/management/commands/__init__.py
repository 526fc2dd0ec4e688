"""Commands: generate_demo_data."""
