"""Domain rules as plain functions; views and jobs call these, tests call them directly."""
