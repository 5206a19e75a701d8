"""Video processing with ffmpeg: probing, planning renditions, and running ffmpeg with live progress."""
