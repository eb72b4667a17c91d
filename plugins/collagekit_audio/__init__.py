"""Audio collages: 1D partitioner, sign/time-reversal cells, audio files through soundfile, and the
Neural Collage audio codec (1D conv hypernetwork, range-coded .clg, decoding at k x the sample rate)."""
