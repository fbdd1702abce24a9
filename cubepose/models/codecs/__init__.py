"""Codecs between labels and network outputs: keypoints of the object and the PnP solve back to a pose,
heatmap and displacement targets and their decoding, and the targets the losses compare against."""
