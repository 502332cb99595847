"""User probe plugins: one class per file, used as `class_path: plugins.<file>.<Class>`."""
