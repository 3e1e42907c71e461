"""Car detector trained from scratch on rendered scenes (ultralytics YOLO)."""
