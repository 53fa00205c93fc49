"""SRGAN (Ledig et al., CVPR 2017) 4x super-resolution: methods, training, evaluation."""
