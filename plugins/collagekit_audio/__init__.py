"""Audio collages: 1D partitioner, sign/time-reversal cells and audio files through soundfile."""
