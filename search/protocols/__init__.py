"""Evaluation protocols over many searches and trainings: stand-alone ranking, device pairs,
train-once-specialize, the accuracy model and random sampling at a price."""
