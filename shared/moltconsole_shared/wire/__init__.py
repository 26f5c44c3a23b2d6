"""The types that cross the backend's API, written by the backend and read by the console."""
