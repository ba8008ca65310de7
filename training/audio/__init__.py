"""The audio branch: bona fide speech corpus, resynthesis pseudo-spoofs, CQCC CNN, training."""
